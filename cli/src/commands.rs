//! What each command does.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use strata_client::query::*;
use strata_client::types::{self, JobView};
use strata_client::{Client, UploadBody};

use crate::config::{self, Saved};
use crate::output::{self, exit, CmdResult, Failure};
use crate::progress::{self, WaitOptions};
use crate::*;

/// Runs one command.
pub async fn run(cli: Cli) -> CmdResult {
    let json = cli.json;
    match cli.command {
        Command::Login(args) => login(cli.key, args, json).await,
        Command::Completions { .. } => unreachable!("handled before the runtime starts"),
        command => {
            let client = connect(cli.server, cli.key)?;
            let ctx = Ctx { client, json };
            ctx.dispatch(command).await
        }
    }
}

/// The client of the configured server: flags, then the environment (both through
/// clap), then what `strata login` saved.
fn connect(server: Option<String>, key: Option<String>) -> CmdResult<Client> {
    let saved = config::load().map_err(Failure::usage)?;
    let server = server.or(saved.server).ok_or_else(|| {
        Failure::usage("no server: run `strata login URL`, or set STRATA_URL or --server")
    })?;
    let mut client = Client::new(&server)?;
    if let Some(token) = key.or(saved.token) {
        client = client.with_token(token);
    }
    Ok(client)
}

/// A secret from the terminal (not echoed), or the first line of stdin when piped.
fn read_secret(prompt: &str) -> CmdResult<String> {
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).map_err(|e| Failure::usage(format!("reading: {e}")))?
    } else {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::usage(format!("reading stdin: {e}")))?;
        s.lines().next().unwrap_or("").to_string()
    };
    let value = value.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        return Err(Failure::usage(format!(
            "{} is empty",
            prompt.trim_end_matches([':', ' '])
        )));
    }
    Ok(value)
}

async fn login(key: Option<String>, args: LoginArgs, json: bool) -> CmdResult {
    let client = Client::new(&args.url)?;
    let saved = if let Some(email) = args.email {
        let password = read_secret("Password: ")?;
        let session = client.login(&email, &password).await?;
        Saved {
            server: Some(client.base_url().to_string()),
            token: Some(session.token),
            kind: Some("session".into()),
            email: Some(email),
            expires_at: Some(session.expires_at.to_rfc3339()),
        }
    } else {
        let key = match key {
            Some(k) => k,
            None => read_secret("API key: ")?,
        };
        Saved {
            server: Some(client.base_url().to_string()),
            token: Some(key),
            kind: Some("key".into()),
            email: None,
            expires_at: None,
        }
    };
    // Check the credential before saving it.
    let me = client
        .clone()
        .with_token(saved.token.clone().unwrap_or_default())
        .me()
        .await?;
    let path = config::save(&saved).map_err(Failure::usage)?;
    if json {
        output::json(&me);
    } else {
        let until = saved
            .expires_at
            .as_deref()
            .map(|t| format!(", until {t}"))
            .unwrap_or_default();
        println!(
            "Logged in to {} as {} ({}{until}); saved in {}",
            saved.server.as_deref().unwrap_or(""),
            me.actor,
            me.role,
            path.display()
        );
    }
    Ok(())
}

struct Ctx {
    client: Client,
    json: bool,
}

impl Ctx {
    async fn dispatch(&self, command: Command) -> CmdResult {
        match command {
            Command::Login(_) | Command::Completions { .. } => unreachable!(),
            Command::Logout => self.logout().await,
            Command::Whoami => self.whoami().await,
            Command::Health => self.health().await,
            Command::Sources(cmd) => self.sources(cmd).await,
            Command::Backup(args) => self.backup(args).await,
            Command::Backups(cmd) => self.backups(cmd).await,
            Command::Restore(args) => self.restore(args).await,
            Command::Ls(args) => self.ls(args).await,
            Command::Cat(args) => self.cat(args).await,
            Command::Diff(args) => self.diff(args).await,
            Command::Find(args) => self.find(args).await,
            Command::Download(args) => self.download(args).await,
            Command::Upload(args) => self.upload(args).await,
            Command::Jobs(cmd) => self.jobs(cmd).await,
            Command::Schedules(cmd) => self.schedules(cmd).await,
            Command::Prune(args) => self.prune(args).await,
            Command::Verify(args) => self.verify(args).await,
            Command::Keys(cmd) => self.keys(cmd).await,
            Command::Users(cmd) => self.users(cmd).await,
        }
    }

    fn wait_options(&self, wait: &WaitArgs) -> WaitOptions {
        WaitOptions {
            json: self.json,
            lines: false,
            detach: wait.detach,
        }
    }

    /// After a job was accepted: wait for it (`--wait`) or say how to follow it.
    async fn accepted(
        &self,
        job_id: &str,
        accepted: &impl serde::Serialize,
        what: String,
        wait: &WaitArgs,
    ) -> CmdResult {
        if !wait.wait {
            if self.json {
                output::json(accepted);
            } else {
                println!("{what}");
                println!("job {job_id} queued (strata jobs watch {job_id})");
            }
            return Ok(());
        }
        let job = progress::wait(&self.client, job_id, self.wait_options(wait)).await?;
        if self.json {
            output::json(&job);
        } else {
            println!("{}", progress::summary(&job));
        }
        progress::outcome(&job)
    }

    async fn logout(&self) -> CmdResult {
        let mut saved = config::load().map_err(Failure::usage)?;
        if saved.kind.as_deref() == Some("session") && self.client.token().is_some() {
            // An expired session is already over.
            match self.client.logout().await {
                Ok(()) => {}
                Err(e) if e.status() == Some(401) => {}
                Err(e) => return Err(e.into()),
            }
        }
        saved.token = None;
        saved.kind = None;
        saved.email = None;
        saved.expires_at = None;
        config::save(&saved).map_err(Failure::usage)?;
        if !self.json {
            println!("Logged out");
        } else {
            output::json(&serde_json::json!({"logged_out": true}));
        }
        Ok(())
    }

    async fn whoami(&self) -> CmdResult {
        let me = self.client.me().await?;
        if self.json {
            output::json(&me);
        } else {
            output::fields(&[
                ("actor", me.actor.clone()),
                ("role", output::name(&me.role)),
                ("server", self.client.base_url().to_string()),
                ("expires", output::opt_time(&me.expires_at)),
            ]);
        }
        Ok(())
    }

    async fn health(&self) -> CmdResult {
        let h = self.client.health().await?;
        if self.json {
            output::json(&h);
        } else {
            let checks = serde_json::to_value(&h.checks).unwrap_or_default();
            let mut pairs = vec![
                ("status", output::name(&h.status)),
                ("version", h.version.clone()),
                ("can backup", h.can_backup.to_string()),
                ("backup running", h.backup_in_progress.to_string()),
            ];
            let rendered: Vec<(String, String)> = checks
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let state = v["status"].as_str().unwrap_or("?");
                            let detail = v["detail"].as_str().or(v["error"].as_str()).unwrap_or("");
                            (k.clone(), format!("{state} {detail}").trim().to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
            for (k, v) in &rendered {
                pairs.push((k.as_str(), v.clone()));
            }
            output::fields(&pairs);
        }
        Ok(())
    }

    async fn sources(&self, cmd: SourcesCmd) -> CmdResult {
        match cmd {
            SourcesCmd::Ls => {
                let sources = self.client.list_sources().await?;
                if self.json {
                    return output::print_json(&sources);
                }
                output::table(
                    &["name", "kind", "what", "id"],
                    sources
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.clone(),
                                s.kind.clone(),
                                describe_source(s),
                                s.id.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
            SourcesCmd::Show { source } => {
                let s = self.client.get_source(&source).await?;
                if self.json {
                    return output::print_json(&s);
                }
                output::fields(&[
                    ("name", s.name.clone()),
                    ("id", s.id.to_string()),
                    ("kind", s.kind.clone()),
                    ("what", describe_source(&s)),
                    ("created", output::time(&s.created_at)),
                ]);
            }
            SourcesCmd::Rm { source } => {
                self.client.delete_source(&source).await?;
                if self.json {
                    return output::print_json(&serde_json::json!({"deleted": source}));
                }
                println!("source {source} deleted");
            }
            SourcesCmd::Add(a) => {
                if a.path.is_none() && a.postgres.is_none() && a.sqlite.is_none() {
                    return Err(Failure::usage(
                        "a source needs --path, --postgres or --sqlite",
                    ));
                }
                let database = if a.postgres.is_some() || a.sqlite.is_some() {
                    Some(types::CreateDatabase {
                        postgres: a.postgres,
                        schemas: (!a.schema.is_empty()).then_some(a.schema),
                        sqlite: a.sqlite,
                    })
                } else {
                    None
                };
                let files = match a.path {
                    Some(path) => Some(types::CreateFiles {
                        path: path.parse().map_err(|e| field_error("path", e))?,
                        exclude: a.exclude,
                    }),
                    None => None,
                };
                let s = self
                    .client
                    .create_source(&types::CreateSource {
                        name: a.name.parse().map_err(|e| field_error("name", e))?,
                        files,
                        database,
                    })
                    .await?;
                if self.json {
                    return output::print_json(&s);
                }
                println!(
                    "source {} added ({}, id {})",
                    s.name,
                    describe_source(&s),
                    s.id
                );
            }
        }
        Ok(())
    }

    async fn backup(&self, args: BackupArgs) -> CmdResult {
        let accepted = self
            .client
            .create_backup(&types::CreateBackup {
                source: args.source,
                type_: args.backup_type.map(backup_type),
                name: args.name,
                ..Default::default()
            })
            .await?;
        let what = format!(
            "backup {} ({}) of source {} accepted",
            accepted.backup_id,
            output::name(&accepted.type_),
            accepted.source_id
        );
        self.accepted(&accepted.job_id.to_string(), &accepted, what, &args.wait)
            .await
    }

    async fn backups(&self, cmd: BackupsCmd) -> CmdResult {
        match cmd {
            BackupsCmd::Ls(a) => {
                let filter = BackupFilter {
                    source: a.source,
                    status: a.status,
                    backup_type: a.backup_type.map(|t| output::name(&backup_type(t))),
                    limit: Some(a.limit.unwrap_or(200).clamp(1, 1000) as i64),
                    ..Default::default()
                };
                let stream = self.client.backups(filter);
                let backups: Vec<types::BackupView> = match a.limit {
                    Some(n) => stream.take(n).try_collect().await?,
                    None => stream.try_collect().await?,
                };
                if self.json {
                    return output::print_json(&backups);
                }
                output::table(
                    &["id", "type", "status", "created", "size", "files"],
                    backups
                        .iter()
                        .map(|b| {
                            vec![
                                b.id.clone(),
                                output::name(&b.type_),
                                output::name(&b.status),
                                format!(
                                    "{} ({})",
                                    output::time(&b.created_at),
                                    output::age(&b.created_at)
                                ),
                                output::bytes(b.size.max(0) as u64),
                                b.file_count.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
            BackupsCmd::Show { backup } => {
                let d = self.client.get_backup(&backup).await?;
                if self.json {
                    return output::print_json(&d);
                }
                let b = &d;
                output::fields(&[
                    ("id", b.id.clone()),
                    ("source", b.source_id.to_string()),
                    ("type", output::name(&b.type_)),
                    ("status", output::name(&b.status)),
                    (
                        "created",
                        format!(
                            "{} ({})",
                            output::time(&b.created_at),
                            output::age(&b.created_at)
                        ),
                    ),
                    ("completed", output::opt_time(&b.completed_at)),
                    (
                        "size",
                        format!(
                            "{} ({} stored)",
                            output::bytes(b.size.max(0) as u64),
                            output::bytes(b.stored_size.max(0) as u64)
                        ),
                    ),
                    (
                        "files",
                        format!("{} files, {} directories", b.file_count, b.dir_count),
                    ),
                    ("parts", b.parts.join(", ")),
                    ("chain", d.chain.join(" <- ")),
                    ("warnings", b.warnings.len().to_string()),
                ]);
            }
            BackupsCmd::Rm {
                backup,
                cascade,
                wait,
            } => {
                let accepted = self
                    .client
                    .delete_backup(
                        &backup,
                        &DeleteOptions {
                            cascade: cascade.then(|| "true".to_string()),
                        },
                    )
                    .await?;
                let what = format!("deleting {}", accepted.deleted.join(", "));
                self.accepted(&accepted.job_id.to_string(), &accepted, what, &wait)
                    .await?;
            }
        }
        Ok(())
    }

    async fn restore(&self, a: RestoreArgs) -> CmdResult {
        let accepted = self
            .client
            .restore_backup(
                &a.backup,
                &types::RestoreRequest {
                    target: a.target.map(types::RestoreTarget::String),
                    include: a.include,
                    pre_restore_backup: a.no_pre_restore_backup.then_some(false),
                    ..Default::default()
                },
            )
            .await?;
        let what = match &accepted.pre_restore_backup_id {
            Some(pre) => format!(
                "restore of {} accepted (the current state is backed up first as {pre})",
                accepted.backup_id
            ),
            None => format!("restore of {} accepted", accepted.backup_id),
        };
        self.accepted(&accepted.job_id.to_string(), &accepted, what, &a.wait)
            .await
    }

    async fn ls(&self, a: LsArgs) -> CmdResult {
        let options = TreeOptions {
            path: a.path,
            recursive: a.recursive.then_some(true),
            limit: Some(1000),
            from: None,
        };
        let mut entries = Box::pin(self.client.tree_entries(&a.backup, options));
        let mut all = Vec::new();
        let stdout = std::io::stdout();
        while let Some(entry) = entries.next().await {
            let e = entry?;
            if self.json {
                all.push(e);
                continue;
            }
            let kind = match output::name(&e.type_).as_str() {
                "dir" => 'd',
                "symlink" => 'l',
                _ => '-',
            };
            let name = if a.recursive { &e.path } else { &e.name };
            let target = e
                .target
                .as_deref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default();
            let mut out = stdout.lock();
            let line = format!(
                "{kind}{} {:>10} {} {name}{target}",
                mode_string(e.mode as u32),
                output::bytes(e.size),
                e.mtime.format("%Y-%m-%d %H:%M")
            );
            if writeln!(out, "{line}").is_err() {
                return Ok(()); // a closed pipe (`| head`)
            }
        }
        if self.json {
            output::json(&all);
        }
        Ok(())
    }

    async fn cat(&self, a: CatArgs) -> CmdResult {
        let download = self.client.file(&a.backup, &a.path, None).await?;
        let mut stream = Box::pin(download.bytes_stream());
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            if out.write_all(&chunk?).is_err() {
                return Ok(());
            }
        }
        let _ = out.flush();
        Ok(())
    }

    async fn diff(&self, a: DiffArgs) -> CmdResult {
        let mut from = None;
        let mut pages = Vec::new();
        loop {
            let page = self
                .client
                .diff(
                    &a.b,
                    &DiffOptions {
                        against: a.a.clone(),
                        limit: Some(1000),
                        from: from.take(),
                    },
                )
                .await?;
            let next = page.next.clone();
            if !self.json {
                for e in &page.added {
                    println!("+ {}", e.path);
                }
                for e in &page.removed {
                    println!("- {}", e.path);
                }
                for c in &page.changed {
                    println!(
                        "M {} ({} -> {})",
                        c.path,
                        output::bytes(c.before.size),
                        output::bytes(c.after.size)
                    );
                }
            }
            pages.push(page);
            match next {
                Some(n) => from = Some(n),
                None => break,
            }
        }
        if self.json {
            let added: Vec<_> = pages.iter().flat_map(|p| p.added.iter()).collect();
            let removed: Vec<_> = pages.iter().flat_map(|p| p.removed.iter()).collect();
            let changed: Vec<_> = pages.iter().flat_map(|p| p.changed.iter()).collect();
            output::json(&serde_json::json!({
                "from": a.a, "to": a.b,
                "added": added, "removed": removed, "changed": changed,
                "counts": pages.last().and_then(|p| p.counts.as_ref()),
            }));
        }
        Ok(())
    }

    async fn find(&self, a: FindArgs) -> CmdResult {
        let mut from = None;
        let mut hits = Vec::new();
        loop {
            let page = self
                .client
                .search(&SearchOptions {
                    glob: a.glob.clone(),
                    source: a.source.clone(),
                    newer_than: a.newer_than.clone(),
                    older_than: a.older_than.clone(),
                    limit: Some(1000),
                    from: from.take(),
                })
                .await?;
            if !self.json {
                for h in &page.items {
                    println!(
                        "{}  {}  {:>10}  {}",
                        h.backup_id,
                        h.mtime.format("%Y-%m-%d %H:%M"),
                        output::bytes(h.size),
                        h.path
                    );
                }
            }
            hits.extend(page.items);
            match page.next {
                Some(n) => from = Some(n),
                None => break,
            }
        }
        if self.json {
            output::json(&hits);
        }
        Ok(())
    }

    async fn download(&self, a: DownloadArgs) -> CmdResult {
        let options = DownloadOptions {
            format: a.format.map(|f| match f {
                FormatArg::Tar => "tar".to_string(),
                FormatArg::Zip => "zip".to_string(),
            }),
            part: a.part.map(|p| match p {
                PartArg::Files => "files".to_string(),
                PartArg::Database => "database".to_string(),
            }),
            include: a.include,
            token: None,
        };
        let download = self.client.download_backup(&a.backup, &options).await?;
        if a.output.as_deref() == Some("-") {
            let mut stream = Box::pin(download.bytes_stream());
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = stream.next().await {
                if out.write_all(&chunk?).is_err() {
                    return Ok(());
                }
            }
            return Ok(());
        }
        let name = a
            .output
            .or_else(|| download.file_name())
            .unwrap_or_else(|| format!("{}.tar", a.backup.replace(['/', '\\'], "_")));
        let bar = progress::bar_for_bytes(download.content_length(), self.json);
        bar.set_message(name.clone());
        let written = download
            .save(Path::new(&name), |n| bar.set_position(n))
            .await?;
        bar.finish_and_clear();
        if self.json {
            output::json(&serde_json::json!({"file": name, "bytes": written}));
        } else {
            println!("{name}: {}", output::bytes(written));
        }
        Ok(())
    }

    async fn upload(&self, a: UploadArgs) -> CmdResult {
        let path = Path::new(&a.file);
        let len = std::fs::metadata(path)
            .map_err(|e| Failure::usage(format!("{}: {e}", a.file)))?
            .len();
        let bar = progress::bar_for_bytes(Some(len), self.json);
        bar.set_message("uploading");
        let b = bar.clone();
        let body = UploadBody::file(path, move |n| b.set_position(n)).await?;
        let accepted = self
            .client
            .upload(
                body,
                &UploadOptions {
                    source: a.source,
                    name: a.name,
                },
            )
            .await;
        bar.finish_and_clear();
        let accepted = accepted?;
        let what = format!("uploaded as backup {}", accepted.backup_id);
        self.accepted(&accepted.job_id.to_string(), &accepted, what, &a.wait)
            .await
    }

    async fn jobs(&self, cmd: JobsCmd) -> CmdResult {
        match cmd {
            JobsCmd::Ls {
                status,
                kind,
                source,
                limit,
            } => {
                let filter = JobFilter {
                    status,
                    kind,
                    source,
                    limit: Some(limit.clamp(1, 1000) as i64),
                    ..Default::default()
                };
                let jobs: Vec<JobView> = self.client.jobs(filter).take(limit).try_collect().await?;
                if self.json {
                    return output::print_json(&jobs);
                }
                output::table(
                    &[
                        "id", "kind", "status", "phase", "created", "progress", "backup",
                    ],
                    jobs.iter()
                        .map(|j| {
                            vec![
                                j.job_id.to_string(),
                                output::name(&j.kind),
                                output::name(&j.status),
                                j.phase.clone().unwrap_or_else(|| "-".into()),
                                output::age(&j.created_at),
                                output::bytes(j.progress.bytes_done.max(0) as u64),
                                j.backup_id.clone().unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect(),
                );
            }
            JobsCmd::Show { job } => {
                let j = self.client.get_job(&job).await?;
                if self.json {
                    return output::print_json(&j);
                }
                show_job(&j);
            }
            JobsCmd::Cancel { job } => {
                let j = self.client.cancel_job(&job).await?;
                if self.json {
                    return output::print_json(&j);
                }
                println!(
                    "job {} {}: asked to stop",
                    j.job_id,
                    output::name(&j.status)
                );
            }
            JobsCmd::Watch { job, detach } => {
                let opts = WaitOptions {
                    json: self.json,
                    lines: self.json,
                    detach,
                };
                let j = progress::wait(&self.client, &job, opts).await?;
                if !self.json {
                    println!("{}", progress::summary(&j));
                }
                return progress::outcome(&j);
            }
        }
        Ok(())
    }

    async fn schedules(&self, cmd: SchedulesCmd) -> CmdResult {
        match cmd {
            SchedulesCmd::Ls { source } => {
                let list = self
                    .client
                    .list_schedules(&ScheduleFilter { source })
                    .await?;
                if self.json {
                    return output::print_json(&list);
                }
                output::table(
                    &[
                        "id", "source", "cron", "timezone", "type", "enabled", "next run", "last",
                    ],
                    list.iter()
                        .map(|s| {
                            vec![
                                s.id.to_string(),
                                s.source.clone(),
                                s.cron.clone(),
                                s.timezone.clone(),
                                output::name(&s.type_),
                                s.enabled.to_string(),
                                output::opt_time(&s.next_run_at),
                                s.last_status.clone().unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect(),
                );
            }
            SchedulesCmd::Add(a) => {
                let keep = [a.keep_last, a.keep_daily, a.keep_weekly, a.keep_monthly];
                let retention = keep.iter().any(Option::is_some).then(|| {
                    serde_json::json!({
                        "keep_last": a.keep_last, "daily": a.keep_daily,
                        "weekly": a.keep_weekly, "monthly": a.keep_monthly,
                    })
                });
                let mut body = serde_json::json!({
                    "source": a.source,
                    "cron": a.cron,
                    "type": a.backup_type.map(|t| output::name(&backup_type(t))),
                    "timezone": a.timezone,
                    "catch_up": a.catch_up.then_some(true),
                    "retention": retention,
                });
                strip_nulls(&mut body);
                let body: types::ScheduleBody = serde_json::from_value(body)
                    .map_err(|e| Failure::usage(format!("schedule: {e}")))?;
                let s = self.client.create_schedule(&body).await?;
                if self.json {
                    return output::print_json(&s);
                }
                println!(
                    "schedule {} added: {} ({}) for {}, next run {}",
                    s.id,
                    s.cron,
                    s.timezone,
                    s.source,
                    output::opt_time(&s.next_run_at)
                );
            }
            SchedulesCmd::Rm { schedule } => {
                self.client.delete_schedule(&schedule).await?;
                if self.json {
                    return output::print_json(&serde_json::json!({"deleted": schedule}));
                }
                println!("schedule {schedule} deleted");
            }
            SchedulesCmd::Pause { schedule } => return self.set_enabled(&schedule, false).await,
            SchedulesCmd::Resume { schedule } => return self.set_enabled(&schedule, true).await,
        }
        Ok(())
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> CmdResult {
        let body: types::ScheduleBody =
            serde_json::from_value(serde_json::json!({"enabled": enabled}))
                .map_err(|e| Failure::usage(e.to_string()))?;
        let s = self.client.update_schedule(id, &body).await?;
        if self.json {
            return output::print_json(&s);
        }
        let state = if s.enabled { "resumed" } else { "paused" };
        println!(
            "schedule {} {state}; next run {}",
            s.id,
            output::opt_time(&s.next_run_at)
        );
        Ok(())
    }

    async fn prune(&self, a: PruneArgs) -> CmdResult {
        let mut body = serde_json::json!({
            "source": a.source, "dry_run": a.dry_run.then_some(true),
            "keep_last": a.keep_last, "daily": a.daily, "weekly": a.weekly,
            "monthly": a.monthly, "yearly": a.yearly, "retention_days": a.retention_days,
        });
        strip_nulls(&mut body);
        let body: types::PruneBody =
            serde_json::from_value(body).map_err(|e| Failure::usage(e.to_string()))?;
        let result = self.client.prune(&body).await?;
        let job_id = result.job_id;
        if self.json && !(a.wait.wait && job_id.is_some()) {
            return output::print_json(&result);
        }
        if !self.json {
            let verb = if result.dry_run {
                "would delete"
            } else {
                "deleting"
            };
            println!(
                "{verb} {} backup(s), keeping {}",
                result.count,
                result.kept.len()
            );
            for id in &result.deleted {
                println!("  - {id}");
            }
        }
        match job_id {
            Some(job) if a.wait.wait => {
                let j = progress::wait(&self.client, &job.to_string(), self.wait_options(&a.wait))
                    .await?;
                if self.json {
                    output::json(&j);
                } else {
                    println!("{}", progress::summary(&j));
                }
                progress::outcome(&j)
            }
            Some(job) => {
                println!("job {job} queued (strata jobs watch {job})");
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn verify(&self, a: VerifyArgs) -> CmdResult {
        let accepted = self
            .client
            .verify_backup(
                &a.backup,
                &types::VerifyRequest {
                    mode: a.drill.then(|| "drill".to_string()),
                },
            )
            .await?;
        let what = format!("verification of {} accepted", a.backup);
        self.accepted(&accepted.job_id.to_string(), &accepted, what, &a.wait)
            .await
    }

    async fn keys(&self, cmd: KeysCmd) -> CmdResult {
        match cmd {
            KeysCmd::Ls => {
                let keys = self.client.list_keys().await?;
                if self.json {
                    return output::print_json(&keys);
                }
                output::table(
                    &[
                        "id",
                        "name",
                        "role",
                        "created",
                        "expires",
                        "last used",
                        "revoked",
                    ],
                    keys.iter()
                        .map(|k| {
                            vec![
                                k.id.clone(),
                                k.name.clone(),
                                output::name(&k.role),
                                output::time(&k.created_at),
                                output::opt_time(&k.expires_at),
                                output::opt_time(&k.last_used_at),
                                output::opt_time(&k.revoked_at),
                            ]
                        })
                        .collect(),
                );
            }
            KeysCmd::Create { name, role } => {
                let body: types::CreateKey = serde_json::from_value(
                    serde_json::json!({"name": name, "role": role.as_str()}),
                )
                .map_err(|e| Failure::usage(e.to_string()))?;
                let created = self.client.create_key(&body).await?;
                if self.json {
                    return output::print_json(&created);
                }
                eprintln!("key {} created; it is shown once:", created.id);
                println!("{}", created.key);
            }
            KeysCmd::Revoke { id } => {
                self.client.revoke_key(&id).await?;
                if self.json {
                    return output::print_json(&serde_json::json!({"revoked": id}));
                }
                println!("key {id} revoked");
            }
        }
        Ok(())
    }

    async fn users(&self, cmd: UsersCmd) -> CmdResult {
        match cmd {
            UsersCmd::Ls => {
                let users = self.client.list_users().await?;
                if self.json {
                    return output::print_json(&users);
                }
                output::table(
                    &["id", "email", "role", "created", "last login"],
                    users
                        .iter()
                        .map(|u| {
                            vec![
                                u.id.clone(),
                                u.email.clone(),
                                output::name(&u.role),
                                output::time(&u.created_at),
                                output::opt_time(&u.last_login_at),
                            ]
                        })
                        .collect(),
                );
            }
            UsersCmd::Add { email, role } => {
                let password = read_secret("Password for the new user: ")?;
                let body: types::CreateUser = serde_json::from_value(
                    serde_json::json!({"email": email, "password": password, "role": role.as_str()}),
                )
                .map_err(|e| Failure::usage(e.to_string()))?;
                let u = self.client.create_user(&body).await?;
                if self.json {
                    return output::print_json(&u);
                }
                println!(
                    "user {} ({}) added, id {}",
                    u.email,
                    output::name(&u.role),
                    u.id
                );
            }
            UsersCmd::Rm { id } => {
                self.client.delete_user(&id).await?;
                if self.json {
                    return output::print_json(&serde_json::json!({"deleted": id}));
                }
                println!("user {id} deleted");
            }
        }
        Ok(())
    }
}

fn backup_type(t: BackupTypeArg) -> types::BackupTypeName {
    match t {
        BackupTypeArg::Full => types::BackupTypeName::Full,
        BackupTypeArg::Incremental => types::BackupTypeName::Incremental,
        BackupTypeArg::Differential => types::BackupTypeName::Differential,
    }
}

fn describe_source(s: &types::SourceView) -> String {
    let v = serde_json::to_value(s).unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(p) = v["files"]["path"].as_str() {
        parts.push(p.to_string());
    }
    if let Some(db) = v["database"].as_object() {
        let kind = db
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("database");
        let target = db
            .get("path")
            .or(db.get("database"))
            .and_then(|k| k.as_str())
            .unwrap_or("");
        parts.push(format!("{kind} {target}").trim().to_string());
    }
    parts.join(" + ")
}

/// `rwxr-xr-x` from a mode's permission bits.
fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn show_job(j: &JobView) {
    let mut pairs = vec![
        ("id", j.job_id.to_string()),
        ("kind", output::name(&j.kind)),
        ("status", output::name(&j.status)),
        ("phase", j.phase.clone().unwrap_or_else(|| "-".into())),
        ("backup", j.backup_id.clone().unwrap_or_else(|| "-".into())),
        (
            "progress",
            format!(
                "{} of {}, {} of {} files",
                output::bytes(j.progress.bytes_done.max(0) as u64),
                j.progress
                    .bytes_total
                    .map(|t| output::bytes(t.max(0) as u64))
                    .unwrap_or_else(|| "?".into()),
                j.progress.files_done,
                j.progress
                    .files_total
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "?".into())
            ),
        ),
        ("created", output::time(&j.created_at)),
        ("started", output::opt_time(&j.started_at)),
        ("finished", output::opt_time(&j.finished_at)),
        ("attempts", j.attempts.to_string()),
        ("trace", j.trace_id.clone().unwrap_or_else(|| "-".into())),
    ];
    if let Some(e) = &j.error {
        pairs.push(("error", serde_json::to_string(e).unwrap_or_default()));
    }
    for w in &j.warnings {
        pairs.push(("warning", serde_json::to_string(w).unwrap_or_default()));
    }
    output::fields(&pairs);
}

/// Drops `null` members, so a body carries only what was given.
fn strip_nulls(v: &mut serde_json::Value) {
    if let Some(map) = v.as_object_mut() {
        map.retain(|_, v| !v.is_null());
        for v in map.values_mut() {
            strip_nulls(v);
        }
    }
}

/// A value the API's document constrains (a pattern, a length) that this one breaks.
fn field_error(field: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(exit::USAGE, format!("{field}: {e} (invalid_{field})"))
}
