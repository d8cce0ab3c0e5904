//! The faces' declarations (`[[patrowl.engines]]`, `[[hpcwaas.workflows]]`, `[gros]` and its
//! projects) parsed into the domain's types in one pass: by start-up, which runs on them, and
//! by `annals config check`, which files each problem at its line. The configuration module
//! describes the file; this one is where the file meets the domain. It starts nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use crate::config::{self, Config, GrosSection, Place, Review};
use crate::domain::gros::service::Controller;
use crate::domain::gros::{AgentName, ProjectKey};
use crate::domain::scan::service::Engine;
use crate::domain::workflow::{Catalogue, Workflow};
use crate::process::find_program;

/// The faces' declarations, parsed: what `annals serve` refuses to start with and
/// `annals config check` reports, found by one function so that the two never disagree.
pub struct Declarations {
    /// The scan engines of `[[patrowl.engines]]`.
    pub engines: Vec<Arc<Engine>>,
    /// The workflows of `[[hpcwaas.workflows]]`.
    pub workflows: Arc<Catalogue>,
    /// The GROS controller's projects and settings.
    pub gros: Controller,
    /// The GROS local agent, when `[gros.agent] enabled`.
    pub gros_agent: Option<(ProjectKey, AgentName)>,
    /// Programs named by an engine, a workflow's step or a project that are not found, each
    /// naming its declaration. Start-up logs them and goes on: a program may be installed
    /// later, and each run looks for it again.
    pub warnings: Vec<String>,
}

/// Every problem and warning of the declarations, each with the declaration it is about.
struct Survey {
    declarations: Option<Declarations>,
    problems: Vec<(Place, String)>,
    warnings: Vec<(Place, String)>,
}

const ENGINES: &str = "patrowl.engines";
const WORKFLOWS: &str = "hpcwaas.workflows";
const PROJECTS: &str = "gros.projects";

impl Declarations {
    /// Parses every face's declarations, enabled or not (a section that says something wrong
    /// is refused even while its face is off), after the settings' own checks, and looks for
    /// the programs they name. Every problem is reported, not only the first.
    pub fn parse(config: &Config) -> Result<Declarations, Vec<String>> {
        let said = |found: Vec<(Place, String)>| {
            found
                .into_iter()
                .map(|(place, text)| format!("{place}: {text}"))
                .collect::<Vec<_>>()
        };
        let mut problems = config.problems();
        let survey = survey(config, true);
        problems.extend(survey.problems);
        match survey.declarations {
            Some(mut declarations) if problems.is_empty() => {
                declarations.warnings = said(survey.warnings);
                Ok(declarations)
            }
            _ => Err(said(problems)),
        }
    }
}

/// Checks a configuration file's text: as a file (its syntax, keys, values and settings), then
/// its declarations. Returns the file's table, or every problem found as `line N: …`.
/// Warnings do not make a file invalid; [`review`] returns them too.
pub fn check(text: &str) -> Result<toml::Table, Vec<String>> {
    // Only warnings depend on whether programs are found: none are looked for.
    let review = review_with(text, false);
    if review.problems.is_empty() {
        Ok(toml::from_str(text).expect("a checked configuration parses"))
    } else {
        Err(review.problems)
    }
}

/// Checks a configuration file's text and reports every problem in one pass, each with its
/// line: the file's, then the declarations', parsed as start-up parses them, and the programs
/// they name that are not found, as warnings.
pub fn review(text: &str) -> Review {
    review_with(text, true)
}

/// [`review`], looking for the programs the declarations name only when `programs` is set.
fn review_with(text: &str, programs: bool) -> Review {
    let mut reading = config::read(text);
    if let Some(config) = reading.config() {
        let survey = survey(config, programs);
        for (place, problem) in &survey.problems {
            reading.problem(*place, problem);
        }
        for (place, warning) in &survey.warnings {
            reading.warning(*place, warning);
        }
    }
    reading.review()
}

/// Parses each entry on its own, so that every entry at fault is named with its place.
/// Engines', workflows' and projects' programs are looked for, each once, for warnings, only
/// when `programs` is set.
fn survey(config: &Config, programs: bool) -> Survey {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    // Whether a program is missing, looked for once however many engines, steps or commands
    // name it with the same PATH and directory; not looked for at all unless `programs` is set.
    let mut found = HashMap::new();
    let mut missing = |program: &str, path: Option<&str>, dir: Option<&Path>| {
        let key = (
            program.to_owned(),
            path.map(str::to_owned),
            dir.map(Path::to_path_buf),
        );
        programs
            && !*found
                .entry(key)
                .or_insert_with(|| find_program(program, path.map(std::ffi::OsStr::new), dir))
    };

    let mut engines = Vec::new();
    let mut names = BTreeSet::new();
    for (place, engine) in entries(ENGINES, &config.patrowl.engines) {
        match Engine::parse(engine) {
            Ok(engine) if !names.insert(engine.name.as_str().to_owned()) => problems.push((
                place,
                format!("engine {} is configured twice", engine.name.as_str()),
            )),
            Ok(engine) => {
                if let Some(program) = engine.scanner.program() {
                    // Run as the engine runs it: the server's PATH, its own directory.
                    let problem = engine.set_program_found(!missing(program, None, None));
                    warnings.extend(problem.map(|problem| (place, problem)));
                }
                engines.push(Arc::new(engine));
            }
            Err(reason) => problems.push((place, reason)),
        }
    }

    let mut parsed = BTreeMap::new();
    let mut workflows_ok = true;
    for (place, spec) in entries(WORKFLOWS, &config.hpcwaas.workflows) {
        match Workflow::parse(spec) {
            Err(reason) => problems.push((place, reason)),
            Ok(workflow) if parsed.contains_key(&workflow.id) => {
                problems.push((place, format!("workflow {} is declared twice", workflow.id)))
            }
            Ok(workflow) => {
                for step in &workflow.steps {
                    let path = step
                        .env
                        .iter()
                        .find(|(name, _)| name == "PATH")
                        .map(|(_, value)| value.as_str());
                    if missing(&step.program, path, step.dir.as_deref()) {
                        warnings.push((
                            place,
                            format!(
                                "workflow {}: step {}: its program {:?} is not found or not \
                                 executable",
                                workflow.id, step.name, step.program
                            ),
                        ));
                    }
                }
                parsed.insert(workflow.id.clone(), workflow);
                continue;
            }
        }
        workflows_ok = false;
    }
    // Each declaration is parsed once, here: the catalogue is made of what passed.
    let workflows = workflows_ok.then(|| Catalogue::of(parsed));

    // Each project alone, among otherwise default settings; then the section with the
    // projects that passed, for what is wrong with the section itself.
    let mut keys = BTreeSet::new();
    let mut good = Vec::new();
    for (place, spec) in entries(PROJECTS, &config.gros.projects) {
        let alone = GrosSection {
            projects: vec![spec.clone()],
            ..GrosSection::default()
        };
        if let Err(reason) = Controller::parse(&alone) {
            problems.push((place, reason));
        } else if !keys.insert(spec.key.clone()) {
            problems.push((place, format!("project {} is declared twice", spec.key)));
        } else {
            for (what, argv) in [
                ("import_command", &spec.import_command),
                ("scrape_command", &spec.scrape_command),
            ] {
                if let Some(program) = argv.first() {
                    if missing(program, None, None) {
                        warnings.push((
                            place,
                            format!(
                                "project {}: its {what} program {program:?} is not found or \
                                 not executable",
                                spec.key
                            ),
                        ));
                    }
                }
            }
            good.push(spec.clone());
        }
    }
    let projects_ok = good.len() == config.gros.projects.len();
    let section = GrosSection {
        projects: good,
        ..config.gros.clone()
    };
    let gros = Controller::parse(&section)
        .map_err(|reason| problems.push((Place::Section("gros"), reason)))
        .ok()
        .filter(|_| projects_ok);

    // `Controller::parse` has checked the local agent's names when it is enabled.
    let agent = &config.gros.agent;
    let gros_agent = agent
        .enabled
        .then(|| {
            let project = ProjectKey::parse(&agent.project).ok()?;
            let name = if agent.agent.is_empty() {
                AgentName::of(&project)
            } else {
                AgentName::parse(&agent.agent).ok()?
            };
            Some((project, name))
        })
        .flatten();
    let declarations = match (workflows, gros) {
        (Some(workflows), Some(gros)) => Some(Declarations {
            engines,
            workflows: Arc::new(workflows),
            gros,
            gros_agent,
            warnings: Vec::new(),
        }),
        _ => None,
    };
    Survey {
        declarations,
        problems,
        warnings,
    }
}

/// Each entry of the array of tables `array`, with the place its problems are reported at.
fn entries<'a, T>(array: &'static str, items: &'a [T]) -> impl Iterator<Item = (Place, &'a T)> {
    (0..)
        .zip(items)
        .map(move |(index, item)| (Place::Entry { array, index }, item))
}

#[cfg(test)]
mod tests {
    use crate::domain::scan::Datatype;

    #[test]
    fn the_files_asset_types_are_the_datatypes_the_scan_face_parses() {
        assert_eq!(
            crate::config::ASSET_TYPES,
            Datatype::ALL.map(Datatype::as_str)
        );
    }
}
