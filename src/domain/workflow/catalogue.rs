//! The workflows a server offers, as a workflow developer declares them under
//! `[[hpcwaas.workflows]]`: parsed once at start-up into types that cannot hold a bad
//! declaration, and the check of a trigger's inputs against a workflow's declared ones. It
//! reads no file and runs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest part of a workflow id (application, environment, name), in bytes.
pub const MAX_ID_PART_BYTES: usize = 64;
/// The longest input value, in bytes.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

// The declarations' own shapes are the configuration file's: parsed here, declared there.
pub use crate::config::{InputKind, InputSpec, OutputSpec, StepSpec, WorkflowSpec};

/// A workflow id, `app@env@name`, whose three parts are not empty and hold no `@`, `/` or
/// control character. Deserializing goes through [`WorkflowId::parse`] too, so no decoded value
/// escapes the check.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct WorkflowId(String);

impl WorkflowId {
    pub fn parse(raw: &str) -> Result<WorkflowId, String> {
        let parts: Vec<&str> = raw.split('@').collect();
        if parts.len() != 3 {
            return Err(format!(
                "{raw:?} is not a workflow id of the form app@env@name"
            ));
        }
        for part in parts {
            check_part(part).map_err(|reason| format!("workflow id {raw:?}: {reason}"))?;
        }
        Ok(WorkflowId(raw.to_owned()))
    }
}

crate::domain::string_newtype!(WorkflowId, String);

/// Lets the catalogue be searched by the id a client sent. The derived order, equality and hash
/// are those of the inner string, as `Borrow` requires.
impl std::borrow::Borrow<str> for WorkflowId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_part(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("a part is empty".into());
    }
    if part.len() > MAX_ID_PART_BYTES {
        return Err(format!("a part is over {MAX_ID_PART_BYTES} bytes"));
    }
    if part.chars().any(|c| c == '@' || c == '/' || c.is_control()) {
        return Err(format!("{part:?} holds `@`, `/` or a control character"));
    }
    Ok(())
}

/// A declared input, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: String,
    /// `INPUT_<NAME>`.
    pub variable: String,
    pub required: bool,
    pub default: Option<String>,
    pub description: String,
    pub kind: InputKind,
}

/// A step, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub name: String,
    pub program: String,
    pub args: Vec<String>,
    pub dir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
}

/// A workflow, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    pub id: WorkflowId,
    pub application_id: String,
    pub environment_id: String,
    pub environment_name: String,
    pub name: String,
    pub description: String,
    pub users: BTreeSet<String>,
    pub inputs: Vec<Input>,
    pub outputs: Vec<OutputSpec>,
    pub steps: Vec<Step>,
}

/// Why a trigger's inputs were refused; the message names every input at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("inputs not declared by the workflow: {}", .0.join(", "))]
    Undeclared(Vec<String>),
    #[error("required inputs missing: {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error("input {name}: {reason}")]
    Invalid { name: String, reason: String },
}

impl Workflow {
    /// Checks one declaration.
    pub fn parse(spec: &WorkflowSpec) -> Result<Workflow, String> {
        let id = WorkflowId::parse(&format!(
            "{}@{}@{}",
            spec.application_id, spec.environment_id, spec.name
        ))?;
        let bad = |reason: String| format!("workflow {id}: {reason}");
        let mut variables = BTreeSet::new();
        let mut inputs = Vec::new();
        for input in &spec.inputs {
            if input.name.is_empty()
                || !input
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(bad(format!(
                    "input name {:?} must be letters, digits and `_`",
                    input.name
                )));
            }
            let variable = format!("INPUT_{}", input.name.to_ascii_uppercase());
            if !variables.insert(variable.clone()) {
                return Err(bad(format!("two inputs are both {variable}")));
            }
            if input.kind == InputKind::SshKey && input.default.is_some() {
                return Err(bad(format!(
                    "ssh_key input {} cannot have a default",
                    input.name
                )));
            }
            inputs.push(Input {
                name: input.name.clone(),
                variable,
                required: input.required,
                default: input.default.clone(),
                description: input.description.clone(),
                kind: input.kind,
            });
        }
        let mut outputs = BTreeSet::new();
        for output in &spec.outputs {
            if output.name.is_empty() || output.name.contains(['=', '\n']) {
                return Err(bad(format!("output name {:?} is not valid", output.name)));
            }
            if !outputs.insert(output.name.clone()) {
                return Err(bad(format!("output {} is declared twice", output.name)));
            }
        }
        if spec.steps.is_empty() {
            return Err(bad("it has no step".into()));
        }
        let mut steps = Vec::new();
        for (index, step) in spec.steps.iter().enumerate() {
            let Some((program, args)) = step.command.split_first() else {
                return Err(bad(format!("step {} has no command", index + 1)));
            };
            if program.is_empty() {
                return Err(bad(format!("step {} has an empty program", index + 1)));
            }
            for key in step.env.keys() {
                if key.is_empty() || key.contains(['=', '\0']) {
                    return Err(bad(format!(
                        "step {}: bad variable name {key:?}",
                        index + 1
                    )));
                }
            }
            steps.push(Step {
                name: if step.name.is_empty() {
                    format!("step-{}", index + 1)
                } else {
                    step.name.clone()
                },
                program: program.clone(),
                args: args.to_vec(),
                dir: (!step.dir.is_empty()).then(|| PathBuf::from(&step.dir)),
                env: step
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                timeout: (step.timeout_s > 0).then(|| Duration::from_secs(step.timeout_s)),
            });
        }
        Ok(Workflow {
            id,
            application_id: spec.application_id.clone(),
            environment_id: spec.environment_id.clone(),
            environment_name: spec.environment_name.clone(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            users: spec.users.iter().cloned().collect(),
            inputs,
            outputs: spec.outputs.clone(),
            steps,
        })
    }

    /// Whether `user` may trigger it (`None`: accounts are off).
    pub fn allows(&self, user: Option<&str>) -> bool {
        match user {
            None => true,
            Some(user) => self.users.is_empty() || self.users.contains(user),
        }
    }

    /// A trigger's inputs checked against the declared ones, with defaults filled in. JSON
    /// strings are taken as they are, other values as their JSON text; `null` is no value.
    pub fn resolve_inputs(
        &self,
        given: &BTreeMap<String, serde_json::Value>,
    ) -> Result<BTreeMap<String, String>, InputError> {
        let undeclared: Vec<String> = given
            .keys()
            .filter(|name| !self.inputs.iter().any(|input| &input.name == *name))
            .cloned()
            .collect();
        if !undeclared.is_empty() {
            return Err(InputError::Undeclared(undeclared));
        }
        let mut resolved = BTreeMap::new();
        let mut missing = Vec::new();
        for input in &self.inputs {
            let value = match given.get(&input.name) {
                None | Some(serde_json::Value::Null) => input.default.clone(),
                Some(serde_json::Value::String(text)) => Some(text.clone()),
                Some(other) => Some(other.to_string()),
            };
            match value {
                Some(value) => {
                    if value.len() > MAX_INPUT_BYTES {
                        return Err(InputError::Invalid {
                            name: input.name.clone(),
                            reason: format!("over {MAX_INPUT_BYTES} bytes"),
                        });
                    }
                    if value.contains('\0') {
                        return Err(InputError::Invalid {
                            name: input.name.clone(),
                            reason: "holds a NUL character".into(),
                        });
                    }
                    if input.kind == InputKind::SshKey && uuid::Uuid::parse_str(&value).is_err() {
                        return Err(InputError::Invalid {
                            name: input.name.clone(),
                            reason: "is not an ssh key id".into(),
                        });
                    }
                    resolved.insert(input.name.clone(), value);
                }
                None if input.required => missing.push(input.name.clone()),
                None => {}
            }
        }
        if !missing.is_empty() {
            return Err(InputError::Missing(missing));
        }
        Ok(resolved)
    }

    pub fn input(&self, name: &str) -> Option<&Input> {
        self.inputs.iter().find(|input| input.name == name)
    }
}

/// Every workflow of the server, by id.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    workflows: BTreeMap<WorkflowId, Workflow>,
}

impl Catalogue {
    /// The catalogue of workflows already parsed, by id.
    pub fn of(workflows: BTreeMap<WorkflowId, Workflow>) -> Catalogue {
        Catalogue { workflows }
    }

    /// Checks every declaration; ids must be unique.
    pub fn parse(specs: &[WorkflowSpec]) -> Result<Catalogue, String> {
        let mut workflows = BTreeMap::new();
        for spec in specs {
            let workflow = Workflow::parse(spec)?;
            if workflows.contains_key(&workflow.id) {
                return Err(format!("workflow {} is declared twice", workflow.id));
            }
            workflows.insert(workflow.id.clone(), workflow);
        }
        Ok(Catalogue { workflows })
    }

    pub fn get(&self, id: &str) -> Option<&Workflow> {
        self.workflows.get(id)
    }

    /// Every workflow, in id order.
    pub fn all(&self) -> impl Iterator<Item = &Workflow> {
        self.workflows.values()
    }

    /// The workflows `user` may trigger (`None`: accounts are off, every one), in id order:
    /// a list shows no workflow whose trigger would be refused, as upstream.
    pub fn triggerable_by<'a>(
        &'a self,
        user: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Workflow> {
        self.all().filter(move |workflow| workflow.allows(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::assert_deserializes_as_parsed;

    #[test]
    fn deserializing_a_workflow_id_checks_it_as_parse_does() {
        assert_deserializes_as_parsed(
            WorkflowId::parse,
            "app@env@wf",
            &["app@env", "app@@wf", "a/b@env@wf", "a@b@c@d"],
        );
    }

    fn spec() -> WorkflowSpec {
        WorkflowSpec {
            application_id: "app".into(),
            environment_id: "env".into(),
            environment_name: "Env".into(),
            name: "wf".into(),
            inputs: vec![
                InputSpec {
                    name: "who".into(),
                    required: true,
                    ..InputSpec::default()
                },
                InputSpec {
                    name: "greeting".into(),
                    default: Some("hello".into()),
                    ..InputSpec::default()
                },
            ],
            steps: vec![StepSpec {
                command: vec!["/bin/echo".into()],
                ..StepSpec::default()
            }],
            ..WorkflowSpec::default()
        }
    }

    #[test]
    fn inputs_are_resolved_with_defaults_and_every_fault_is_named() {
        let workflow = Workflow::parse(&spec()).unwrap();
        assert_eq!(workflow.id.as_str(), "app@env@wf");
        let given = |json: serde_json::Value| {
            serde_json::from_value::<BTreeMap<String, serde_json::Value>>(json).unwrap()
        };
        let resolved = workflow
            .resolve_inputs(&given(serde_json::json!({"who": "x; rm -rf /"})))
            .unwrap();
        assert_eq!(resolved["who"], "x; rm -rf /");
        assert_eq!(resolved["greeting"], "hello");
        assert_eq!(
            workflow.resolve_inputs(&given(serde_json::json!({"who": 3, "zz": 1, "aa": 2}))),
            Err(InputError::Undeclared(vec!["aa".into(), "zz".into()]))
        );
        assert_eq!(
            workflow.resolve_inputs(&BTreeMap::new()),
            Err(InputError::Missing(vec!["who".into()]))
        );
    }

    #[test]
    fn bad_declarations_are_refused() {
        let mut no_steps = spec();
        no_steps.steps.clear();
        assert!(Workflow::parse(&no_steps).unwrap_err().contains("no step"));
        let mut at = spec();
        at.name = "a@b".into();
        assert!(Workflow::parse(&at).is_err());
        let mut twice = spec();
        twice.inputs[1].name = "WHO".into();
        assert!(Workflow::parse(&twice).unwrap_err().contains("INPUT_WHO"));
        assert!(Catalogue::parse(&[spec(), spec()])
            .unwrap_err()
            .contains("twice"));
    }
}
