//! Run config tasks as the Protobuf messages of the runservice's `CreateRun` (the gateway's
//! `createrun` and `agola run` both send them).

use agola_proto::common::v1 as pb;

use crate::runconfig::{
    Arch, Container, DependCondition, DockerRegistryAuth, DockerRegistryAuthType, RunConfigTask,
    Step,
};

fn arch(a: Option<Arch>) -> pb::Arch {
    match a {
        None => pb::Arch::Unspecified,
        Some(Arch::I386) => pb::Arch::Arch386,
        Some(Arch::Amd64) => pb::Arch::Amd64,
        Some(Arch::Arm) => pb::Arch::Arm,
        Some(Arch::Arm64) => pb::Arch::Arm64,
    }
}

fn condition(c: DependCondition) -> pb::DependCondition {
    match c {
        DependCondition::OnSuccess => pb::DependCondition::OnSuccess,
        DependCondition::OnFailure => pb::DependCondition::OnFailure,
        DependCondition::OnSkipped => pb::DependCondition::OnSkipped,
    }
}

fn container(c: &Container) -> pb::Container {
    pb::Container {
        image: c.image.clone(),
        environment: c.environment.clone().into_iter().collect(),
        user: c.user.clone(),
        privileged: c.privileged,
        entrypoint: c.entrypoint.clone(),
        volumes: c
            .volumes
            .iter()
            .map(|v| pb::Volume {
                path: v.path.clone(),
                tmpfs: Some(pb::TmpfsVolume { size: v.tmpfs.size }),
            })
            .collect(),
    }
}

fn registry_auth(a: &DockerRegistryAuth) -> pb::DockerRegistryAuth {
    pb::DockerRegistryAuth {
        r#type: match a.auth_type {
            DockerRegistryAuthType::Basic => pb::DockerRegistryAuthType::Basic,
            DockerRegistryAuthType::EncodedAuth => pb::DockerRegistryAuthType::Encodedauth,
        } as i32,
        username: a.username.clone(),
        password: a.password.clone(),
        auth: a.auth.clone(),
    }
}

fn contents(c: &[crate::runconfig::SaveContent]) -> Vec<pb::SaveContent> {
    c.iter()
        .map(|c| pb::SaveContent {
            source_dir: c.source_dir.clone(),
            dest_dir: c.dest_dir.clone(),
            paths: c.paths.clone(),
        })
        .collect()
}

/// One step as its Protobuf message.
pub fn step_to_pb(s: &Step) -> pb::Step {
    use pb::step::Step as S;
    let step = match s {
        Step::Run(r) => S::Run(pb::RunStep {
            name: r.name.clone(),
            command: r.command.clone(),
            environment: r.environment.clone().into_iter().collect(),
            working_dir: r.working_dir.clone(),
            shell: r.shell.clone(),
            tty: Some(r.tty),
        }),
        Step::SaveToWorkspace(w) => S::SaveToWorkspace(pb::SaveToWorkspaceStep {
            contents: contents(&w.contents),
        }),
        Step::RestoreWorkspace(w) => S::RestoreWorkspace(pb::RestoreWorkspaceStep {
            dest_dir: w.dest_dir.clone(),
        }),
        Step::SaveCache(c) => S::SaveCache(pb::SaveCacheStep {
            key: c.key.clone(),
            contents: contents(&c.contents),
        }),
        Step::RestoreCache(c) => S::RestoreCache(pb::RestoreCacheStep {
            keys: c.keys.clone(),
            dest_dir: c.dest_dir.clone(),
        }),
    };
    pb::Step { step: Some(step) }
}

/// A run config task as its Protobuf message.
pub fn run_config_task_to_pb(t: &RunConfigTask) -> pb::RunConfigTask {
    let refs = &t.variable_refs;
    pb::RunConfigTask {
        level: t.level,
        id: t.id.clone(),
        name: t.name.clone(),
        depends: t
            .depends
            .iter()
            .map(|(k, d)| {
                (
                    k.clone(),
                    pb::RunConfigTaskDepend {
                        task_id: d.task_id.clone(),
                        conditions: d.conditions.iter().map(|c| condition(*c) as i32).collect(),
                    },
                )
            })
            .collect(),
        runtime: Some(pb::Runtime {
            r#type: pb::RuntimeType::Pod as i32,
            arch: arch(t.runtime.arch) as i32,
            containers: t.runtime.containers.iter().map(container).collect(),
        }),
        environment: t.environment.clone().into_iter().collect(),
        working_dir: t.working_dir.clone(),
        shell: t.shell.clone(),
        user: t.user.clone(),
        steps: t.steps.iter().map(step_to_pb).collect(),
        ignore_failure: t.ignore_failure,
        needs_approval: t.needs_approval,
        min_approvers: t.min_approvers,
        skip: t.skip,
        docker_registries_auth: t
            .docker_registries_auth
            .iter()
            .map(|(k, a)| (k.clone(), registry_auth(a)))
            .collect(),
        variable_refs: Some(pb::VariableRefs {
            environment: refs.environment.clone().into_iter().collect(),
            docker_registries_auth: refs
                .docker_registries_auth
                .iter()
                .map(|(k, r)| {
                    (
                        k.clone(),
                        pb::DockerRegistryAuthVariableRefs {
                            username: r.username.clone(),
                            password: r.password.clone(),
                            auth: r.auth.clone(),
                        },
                    )
                })
                .collect(),
            container_environment: refs
                .container_environment
                .iter()
                .map(|(i, m)| {
                    (
                        *i,
                        pb::EnvironmentVariableRefs {
                            environment: m.clone().into_iter().collect(),
                        },
                    )
                })
                .collect(),
            step_environment: refs
                .step_environment
                .iter()
                .map(|(i, m)| {
                    (
                        *i,
                        pb::EnvironmentVariableRefs {
                            environment: m.clone().into_iter().collect(),
                        },
                    )
                })
                .collect(),
        }),
    }
}
