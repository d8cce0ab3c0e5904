//! Given/when/then tests of the `execution` entity's rules (the HPCWaaS face's workflow
//! executions), run without an actor system or a log: requests, steps, log lines, outputs,
//! cancelling, ending and the restart rule.

use std::collections::BTreeMap;

use annals::domain::workflow::{
    CancelRequested, EndedAt, Ending, Execution, ExecutionCommand, ExecutionEvent, ExecutionFailed,
    ExecutionRejection, Level, LogLine, LogLinesDropped, OutputsRecorded, Requested, Status,
    StepEnded, StepEndedEvent, StepOutputRead, StepStarted, StepSupervised, WorkflowId,
    INTERRUPTED,
};
use annals::process::supervised::{Offsets, Supervision};
use annals::runtime::testing::given;
use annals::runtime::Entity;
use chrono::{DateTime, Utc};

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

fn requested() -> ExecutionEvent {
    ExecutionEvent::ExecutionRequested(Requested {
        workflow: "a@e@w".into(),
        inputs: BTreeMap::from([("who".into(), "x; rm -rf /".into())]),
        by: Some("ada".into()),
        at: t(1),
    })
}

fn started() -> ExecutionEvent {
    ExecutionEvent::StepStarted(StepStarted {
        index: 0,
        name: "greet".into(),
        at: t(2),
    })
}

fn finished() -> ExecutionEvent {
    finished_at(3)
}

fn finished_at(seconds: i64) -> ExecutionEvent {
    ExecutionEvent::ExecutionSucceeded(EndedAt { at: t(seconds) })
}

fn line(content: &str) -> LogLine {
    LogLine {
        level: Level::Info,
        at: t(2),
        content: content.into(),
    }
}

/// Checks that an ended execution refuses `command`.
#[track_caller]
fn refused_once_ended(command: ExecutionCommand) {
    given::<Execution>([requested(), finished()])
        .when(command)
        .then_rejected(ExecutionRejection::Ended);
}

fn start_step() -> ExecutionCommand {
    ExecutionCommand::StartStep {
        index: 0,
        name: "greet".into(),
    }
}

fn end_step(index: u32) -> ExecutionCommand {
    ExecutionCommand::EndStep {
        index,
        ended: ended(),
    }
}

/// Step 0's end, at 3 s.
fn step_ended() -> ExecutionEvent {
    ExecutionEvent::StepEnded(StepEndedEvent {
        index: 0,
        ended: ended(),
        at: t(3),
    })
}

fn ended() -> StepEnded {
    StepEnded {
        exit_code: Some(0),
        signal: None,
        duration_ms: 5,
        timed_out: false,
        cancelled: false,
    }
}

#[test]
fn a_request_is_recorded_once() {
    let state = given::<Execution>([])
        .at(t(1))
        .when(ExecutionCommand::Request {
            workflow: WorkflowId::parse("a@e@w").unwrap(),
            inputs: BTreeMap::from([("who".into(), "x; rm -rf /".into())]),
            by: Some("ada".into()),
        })
        .then(vec![requested()]);
    assert_eq!(state.status, Some(Status::Running));
    given::<Execution>([requested()])
        .when(ExecutionCommand::Request {
            workflow: WorkflowId::parse("a@e@w").unwrap(),
            inputs: BTreeMap::new(),
            by: None,
        })
        .then_rejected(ExecutionRejection::AlreadyRequested);
}

#[test]
fn steps_start_and_end_in_order() {
    given::<Execution>([requested()])
        .at(t(2))
        .when(start_step())
        .then(vec![started()]);
    given::<Execution>([])
        .when(start_step())
        .then_rejected(ExecutionRejection::NotFound);
    let state = given::<Execution>([requested(), started()])
        .at(t(3))
        .when(end_step(0))
        .then(vec![step_ended()]);
    assert_eq!(state.steps[0].ended, Some(ended()));
    given::<Execution>([requested(), started()])
        .when(end_step(1))
        .then_rejected(ExecutionRejection::WrongStep(1));
}

#[test]
fn lines_past_the_limit_are_counted_not_kept() {
    let state = given::<Execution>([requested()])
        .when(ExecutionCommand::RecordLines {
            lines: vec![line("a"), line("b"), line("c")],
            max_lines: 2,
            read: None,
        })
        .then(vec![
            ExecutionEvent::LogLineRecorded(line("a")),
            ExecutionEvent::LogLineRecorded(line("b")),
            ExecutionEvent::LogLinesDropped(LogLinesDropped { count: 1 }),
        ]);
    assert_eq!((state.lines, state.dropped_lines), (2, 1));
    refused_once_ended(ExecutionCommand::RecordLines {
        lines: vec![line("late")],
        max_lines: 10,
        read: None,
    });
}

fn supervision() -> Supervision {
    Supervision {
        dir: "/data/hpcwaas-work/x-0/run".into(),
        supervisor: 100,
        group: 101,
        boot: "boot".into(),
    }
}

#[test]
fn a_supervised_step_records_how_far_its_output_was_read_until_it_ends() {
    let supervised = ExecutionEvent::StepSupervised(StepSupervised {
        index: 0,
        run: supervision(),
        at: t(2),
    });
    let state = given::<Execution>([requested(), started()])
        .at(t(2))
        .when(ExecutionCommand::SuperviseStep {
            index: 0,
            run: supervision(),
        })
        .then(vec![supervised.clone()]);
    assert_eq!(state.run.map(|run| run.read), Some(Offsets::default()));
    given::<Execution>([requested(), started()])
        .when(ExecutionCommand::SuperviseStep {
            index: 1,
            run: supervision(),
        })
        .then_rejected(ExecutionRejection::WrongStep(1));
    let read = Offsets {
        stdout: 12,
        stderr: 3,
    };
    let state = given::<Execution>([requested(), started(), supervised.clone()])
        .at(t(2))
        .when(ExecutionCommand::RecordLines {
            lines: vec![line("a")],
            max_lines: 10,
            read: Some(read),
        })
        .then(vec![
            ExecutionEvent::LogLineRecorded(line("a")),
            ExecutionEvent::StepOutputRead(StepOutputRead {
                index: 0,
                read,
                at: t(2),
            }),
        ]);
    let run = state.run.expect("the step runs");
    assert_eq!(
        (run.index, run.read, run.supervision),
        (0, read, supervision())
    );
    let state = given::<Execution>([requested(), started(), supervised])
        .at(t(3))
        .when(end_step(0))
        .then(vec![step_ended()]);
    assert_eq!(state.run, None, "an ended step has no run to re-attach to");
}

#[test]
fn lines_the_runner_held_back_are_counted_once() {
    let state = given::<Execution>([requested()])
        .when(ExecutionCommand::CountDroppedLines { count: 7 })
        .then(vec![ExecutionEvent::LogLinesDropped(LogLinesDropped {
            count: 7,
        })]);
    assert_eq!(state.dropped_lines, 7);
    given::<Execution>([requested()])
        .when(ExecutionCommand::CountDroppedLines { count: 0 })
        .then(vec![]);
    refused_once_ended(ExecutionCommand::CountDroppedLines { count: 1 });
}

#[test]
fn outputs_are_recorded_while_running() {
    let outputs = BTreeMap::from([("greeting".to_owned(), "hi".to_owned())]);
    let state = given::<Execution>([requested()])
        .when(ExecutionCommand::RecordOutputs {
            outputs: outputs.clone(),
        })
        .then(vec![ExecutionEvent::OutputsRecorded(OutputsRecorded {
            outputs: outputs.clone(),
        })]);
    assert_eq!(state.outputs, outputs);
    refused_once_ended(ExecutionCommand::RecordOutputs { outputs });
}

#[test]
fn a_cancel_asks_once_and_is_harmless_after_the_end() {
    let state = given::<Execution>([requested()])
        .at(t(5))
        .when(ExecutionCommand::Cancel {
            by: Some("ada".into()),
        })
        .then(vec![ExecutionEvent::CancelRequested(CancelRequested {
            by: Some("ada".into()),
            at: t(5),
        })]);
    assert_eq!(state.status, Some(Status::Cancelling));
    given::<Execution>([requested(), finished()])
        .when(ExecutionCommand::Cancel { by: None })
        .then(vec![]);
    given::<Execution>([])
        .when(ExecutionCommand::Cancel { by: None })
        .then_rejected(ExecutionRejection::NotFound);
}

#[test]
fn an_execution_ends_once() {
    let state = given::<Execution>([requested()])
        .at(t(4))
        .when(ExecutionCommand::Finish(Ending::Failed {
            reason: "step greet exited with code 3".into(),
        }))
        .then(vec![
            ExecutionEvent::LogLineRecorded(LogLine {
                level: Level::Error,
                at: t(4),
                content: "failed: step greet exited with code 3".into(),
            }),
            ExecutionEvent::ExecutionFailed(ExecutionFailed {
                reason: "step greet exited with code 3".into(),
                at: t(4),
            }),
        ]);
    assert_eq!(state.status, Some(Status::Failed));
    assert_eq!(
        state.lines_by_level,
        [0, 0, 0, 1],
        "the line saying why is the last"
    );
    given::<Execution>([requested()])
        .at(t(4))
        .when(ExecutionCommand::Finish(Ending::Success))
        .then(vec![finished_at(4)]);
    refused_once_ended(ExecutionCommand::Finish(Ending::Cancelled));
}

#[test]
fn a_cancellation_ends_with_a_line_naming_who_asked() {
    let asked = ExecutionEvent::CancelRequested(CancelRequested {
        by: Some("ada".into()),
        at: t(5),
    });
    let state = given::<Execution>([requested(), asked])
        .at(t(6))
        .when(ExecutionCommand::Finish(Ending::Cancelled))
        .then(vec![
            ExecutionEvent::LogLineRecorded(LogLine {
                level: Level::Warn,
                at: t(6),
                content: "cancelled by ada".into(),
            }),
            ExecutionEvent::ExecutionCancelled(EndedAt { at: t(6) }),
        ]);
    assert_eq!(state.status, Some(Status::Cancelled));
}

#[test]
fn a_restart_fails_a_running_execution_with_a_line_saying_why() {
    let state = given::<Execution>([requested(), started()])
        .at(t(9))
        .when(ExecutionCommand::MarkInterrupted)
        .then(vec![
            ExecutionEvent::LogLineRecorded(LogLine {
                level: Level::Error,
                at: t(9),
                content: INTERRUPTED.into(),
            }),
            ExecutionEvent::ExecutionFailed(ExecutionFailed {
                reason: "interrupted".into(),
                at: t(9),
            }),
        ]);
    assert_eq!(
        Execution::on_restart(&state),
        None,
        "an ended execution is left alone"
    );
    refused_once_ended(ExecutionCommand::MarkInterrupted);
}

/// The state after `count` lines (every third a warning), folded as a log replay folds them.
fn state_with_lines(count: u64) -> annals::domain::workflow::ExecutionState {
    let mut state = Default::default();
    let mut events = vec![requested(), started()];
    events.extend((0..count).map(|n| {
        ExecutionEvent::LogLineRecorded(LogLine {
            level: if n % 3 == 2 { Level::Warn } else { Level::Info },
            ..line(&format!("line {n} of a long and chatty step"))
        })
    }));
    for event in &events {
        Execution::apply(&mut state, event);
    }
    state
}

#[test]
fn the_state_counts_and_indexes_lines_but_does_not_keep_them() {
    let state = state_with_lines(2_500);
    assert_eq!(state.version, 2_502, "the stream's version as folded");
    assert_eq!(state.lines, 2_500);
    assert_eq!(state.lines_by_level, [0, 1_667, 833, 0]);
    let marks: Vec<(u64, [u64; 4])> = state
        .log_index
        .iter()
        .map(|mark| (mark.version, mark.before))
        .collect();
    // Lines 0, 1024 and 2048, each at its event's version (the request and the step come
    // first), with the lines of each level before it.
    assert_eq!(
        marks,
        [
            (3, [0, 0, 0, 0]),
            (1_027, [0, 683, 341, 0]),
            (2_051, [0, 1_366, 682, 0])
        ]
    );
}

#[test]
fn a_snapshot_and_a_status_read_stay_small_however_long_the_log() {
    let encoded = |state: &annals::domain::workflow::ExecutionState| {
        rmp_serde::to_vec_named(state)
            .expect("a state encodes")
            .len()
    };
    let (short, long) = (state_with_lines(10), state_with_lines(5_000));
    // The long log's state holds four more index marks than the short one's, nothing else.
    assert_eq!(long.log_index.len() - short.log_index.len(), 4);
    let (short_bytes, long_bytes) = (encoded(&short), encoded(&long));
    assert!(long_bytes < 1_024, "{long_bytes} bytes with 5,000 lines");
    assert!(
        long_bytes - short_bytes <= 4 * 64,
        "{short_bytes} bytes with 10 lines, {long_bytes} with 5,000"
    );
    // What a status read copies holds no index at all: only its counts grow, by a few bytes.
    let (short_status, long_status) = (
        encoded(&short.without_log_index()),
        encoded(&long.without_log_index()),
    );
    assert!(
        long_status - short_status <= 16,
        "{short_status} bytes with 10 lines, {long_status} with 5,000"
    );
}
