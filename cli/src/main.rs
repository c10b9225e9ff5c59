//! `strata`: the command line of Strata's backup API, on the `strata-client` crate.

mod commands;
mod config;
mod output;
mod progress;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::output::exit;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the job failed or was cancelled
  2  usage error (bad arguments, or a request the API refused as invalid)
  3  authentication or permission
  4  not found
  5  conflict (a job already running, a name taken…)
  6  server or network error

Environment: STRATA_URL and STRATA_KEY override what `strata login` saved (and
--server / --key override both); STRATA_CONFIG names the configuration file.";

const EXAMPLES: &str = "\
Examples:
  strata login http://127.0.0.1:8080 --key strata_…
  strata sources add web --path /srv/web
  strata backup web --wait
  strata backups ls --source web
  strata ls <backup> etc/nginx
  strata restore <backup> --target /srv/restore --wait";

/// Back up, browse and restore with a Strata server.
#[derive(Debug, Parser)]
#[command(name = "strata", version, after_help = format!("{EXAMPLES}\n\n{EXIT_CODES}"))]
pub struct Cli {
    /// The server's URL (default: the one `strata login` saved).
    #[arg(
        long,
        global = true,
        env = "STRATA_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub server: Option<String>,
    /// An API key or session token (default: the one `strata login` saved).
    #[arg(
        long,
        global = true,
        env = "STRATA_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub key: Option<String>,
    /// Print machine-readable JSON (one document; `watch` prints JSON lines).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Save a server and credential (an API key, or a user's session) for later commands.
    #[command(
        after_help = "Examples:\n  strata login http://127.0.0.1:8080 --key \"$(cat data/admin-key)\"\n  strata login https://backups.example.com --email me@example.com"
    )]
    Login(LoginArgs),
    /// End the saved session and forget the credential.
    #[command(after_help = "Example:\n  strata logout")]
    Logout,
    /// Who the credential is.
    #[command(after_help = "Example:\n  strata whoami --json")]
    Whoami,
    /// The server's health, and whether a backup can start now.
    #[command(after_help = "Example:\n  strata health")]
    Health,
    /// Sources: what gets backed up.
    #[command(subcommand)]
    Sources(SourcesCmd),
    /// Back a source up.
    #[command(
        after_help = "Examples:\n  strata backup web --wait\n  strata backup web --type incremental --name before-upgrade --wait --json"
    )]
    Backup(BackupArgs),
    /// List, show and delete backups.
    #[command(subcommand)]
    Backups(BackupsCmd),
    /// Restore a backup: over its source (after backing the source up), or elsewhere.
    #[command(
        after_help = "Examples:\n  strata restore <backup> --target /srv/restore --wait\n  strata restore <backup> --include etc/nginx --wait"
    )]
    Restore(RestoreArgs),
    /// List a directory of a backup as it was.
    #[command(after_help = "Examples:\n  strata ls <backup>\n  strata ls <backup> etc -R")]
    Ls(LsArgs),
    /// Print one file of a backup.
    #[command(after_help = "Example:\n  strata cat <backup> etc/nginx/nginx.conf")]
    Cat(CatArgs),
    /// What changed from backup A to backup B (of one source).
    #[command(
        after_help = "Example:\n  strata diff <older backup> <newer backup>     # + added, - removed, M changed"
    )]
    Diff(DiffArgs),
    /// Find paths matching a glob across backups, newest backup first.
    #[command(
        after_help = "Examples:\n  strata find '**/*.conf' --source web\n  strata find 'etc/nginx/*' --newer-than 7d"
    )]
    Find(FindArgs),
    /// Download a backup as a tar or zip archive (or its database file).
    #[command(
        after_help = "Examples:\n  strata download <backup>                       # a tar, under the server's file name\n  strata download <backup> --format zip -o site.zip\n  strata download <backup> --part database -o app.db\n  strata download <backup> --include etc -o - | tar -t"
    )]
    Download(DownloadArgs),
    /// Upload a tar or zip archive as a new backup.
    #[command(
        after_help = "Example:\n  strata upload pb_backup.zip --source pb --name imported --wait"
    )]
    Upload(UploadArgs),
    /// Jobs: list, show, cancel, watch.
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// Backup schedules.
    #[command(subcommand)]
    Schedules(SchedulesCmd),
    /// Delete backups the retention rules no longer keep.
    #[command(
        after_help = "Examples:\n  strata prune --dry-run\n  strata prune --source web --keep-last 7 --daily 14"
    )]
    Prune(PruneArgs),
    /// Check a backup: read every pack (default), or restore it into a scratch directory.
    #[command(
        after_help = "Examples:\n  strata verify <backup> --wait\n  strata verify <backup> --drill --wait"
    )]
    Verify(VerifyArgs),
    /// API keys (admins).
    #[command(subcommand)]
    Keys(KeysCmd),
    /// User accounts (admins).
    #[command(subcommand)]
    Users(UsersCmd),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  strata completions bash > ~/.local/share/bash-completion/completions/strata"
    )]
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's URL, e.g. http://127.0.0.1:8080.
    pub url: String,
    /// Log in as this user (the password is asked for, or read from stdin when piped);
    /// without it, the API key given with --key (or asked for) is saved.
    #[arg(long)]
    pub email: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SourcesCmd {
    /// List the sources.
    #[command(after_help = "Example:\n  strata sources ls --json | jq -r '.[].name'")]
    Ls,
    /// Show one source.
    #[command(after_help = "Example:\n  strata sources show web")]
    Show { source: String },
    /// Delete a source that has no backups left (its schedules go with it).
    #[command(after_help = "Example:\n  strata sources rm old-app")]
    Rm { source: String },
    /// Add a source: a directory, a PostgreSQL database, an SQLite file, or a directory
    /// with a database.
    #[command(
        after_help = "Examples:\n  strata sources add web --path /srv/web --exclude '*.tmp'\n  strata sources add app --postgres postgres://backup@db/app\n  strata sources add pb --path /srv/pb --sqlite /srv/pb/pb_data/data.db"
    )]
    Add(SourceAddArgs),
}

#[derive(Debug, Args)]
pub struct SourceAddArgs {
    /// `[a-z0-9_-]`, unique.
    pub name: String,
    /// The directory to back up (absolute).
    #[arg(long)]
    pub path: Option<String>,
    /// A glob of paths to leave out (repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// A PostgreSQL connection URL.
    #[arg(long, conflicts_with = "sqlite")]
    pub postgres: Option<String>,
    /// Only these schemas of the PostgreSQL database (repeatable).
    #[arg(long, requires = "postgres")]
    pub schema: Vec<String>,
    /// An SQLite database file (absolute).
    #[arg(long)]
    pub sqlite: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackupTypeArg {
    Full,
    Incremental,
    Differential,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Follow the job to its end with a progress bar; exit with its outcome.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: Ctrl-C leaves the job running instead of asking.
    #[arg(long, requires = "wait")]
    pub detach: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Source name or id (may be left out when there is one source).
    pub source: Option<String>,
    #[arg(long = "type", value_enum)]
    pub backup_type: Option<BackupTypeArg>,
    /// `[a-z0-9_-]`, unique (generated when absent).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Subcommand)]
pub enum BackupsCmd {
    /// List backups, newest first.
    #[command(
        after_help = "Examples:\n  strata backups ls --source web --limit 10\n  strata backups ls --status failed --json"
    )]
    Ls(BackupsLsArgs),
    /// Show one backup and its chain.
    #[command(after_help = "Example:\n  strata backups show <backup>")]
    Show { backup: String },
    /// Delete a backup (admins).
    #[command(
        after_help = "Examples:\n  strata backups rm <backup> --wait\n  strata backups rm <full backup> --cascade    # with the backups built on it"
    )]
    Rm {
        backup: String,
        /// Also delete the backups that depend on it.
        #[arg(long)]
        cascade: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Debug, Args)]
pub struct BackupsLsArgs {
    #[arg(long)]
    pub source: Option<String>,
    /// `pending`, `complete`, `failed`, `deleting`.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long = "type", value_enum)]
    pub backup_type: Option<BackupTypeArg>,
    /// At most this many (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    pub backup: String,
    /// Where to: an absolute directory, or a name (a directory beside the source's);
    /// for a database, the database or file to restore into. Default: over the source.
    #[arg(long)]
    pub target: Option<String>,
    /// Only this path and what is below it (repeatable).
    #[arg(long)]
    pub include: Vec<String>,
    /// Restoring over the source: do not back its current state up first.
    #[arg(long)]
    pub no_pre_restore_backup: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    pub backup: String,
    /// A directory of the backup (default: its root).
    pub path: Option<String>,
    /// Everything below it.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    pub backup: String,
    pub path: String,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older backup.
    pub a: String,
    /// The newer backup.
    pub b: String,
}

#[derive(Debug, Args)]
pub struct FindArgs {
    /// `**/*.conf`, `etc/nginx/*`.
    pub glob: String,
    #[arg(long)]
    pub source: Option<String>,
    /// Only backups newer than this (RFC 3339, or a duration such as 7d).
    #[arg(long)]
    pub newer_than: Option<String>,
    #[arg(long)]
    pub older_than: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Tar,
    Zip,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PartArg {
    Files,
    Database,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    pub backup: String,
    /// Where to write it (`-` for stdout; default: the server's file name, here).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// `database`: the `.db` or `.sql` file itself.
    #[arg(long, value_enum)]
    pub part: Option<PartArg>,
    /// Only this path (and what is below it).
    #[arg(long)]
    pub include: Option<String>,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// A tar or zip archive.
    pub file: String,
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// List jobs, newest first.
    #[command(
        after_help = "Examples:\n  strata jobs ls --status running\n  strata jobs ls --kind restore --limit 5 --json"
    )]
    Ls {
        /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
        #[arg(long)]
        status: Option<String>,
        /// `backup`, `restore`, `delete`, `prune`, `verify`, `import`, `gc`.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        source: Option<String>,
        /// At most this many (default 20).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one job.
    #[command(after_help = "Example:\n  strata jobs show <job>")]
    Show { job: String },
    /// Ask a job to stop.
    #[command(after_help = "Example:\n  strata jobs cancel <job>")]
    Cancel { job: String },
    /// Follow a job to its end (JSON lines with --json).
    #[command(
        after_help = "Examples:\n  strata jobs watch <job>\n  strata jobs watch <job> --json | jq -c '.progress'"
    )]
    Watch {
        job: String,
        /// Ctrl-C leaves the job running instead of asking.
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCmd {
    /// List schedules.
    #[command(after_help = "Example:\n  strata schedules ls --source web")]
    Ls {
        #[arg(long)]
        source: Option<String>,
    },
    /// Add a schedule.
    #[command(
        after_help = "Example:\n  strata schedules add --source web --cron '0 3 * * *' --timezone Europe/Paris --keep-daily 14"
    )]
    Add(ScheduleAddArgs),
    /// Delete a schedule.
    #[command(after_help = "Example:\n  strata schedules rm <schedule>")]
    Rm { schedule: String },
    /// Stop a schedule from firing.
    #[command(after_help = "Example:\n  strata schedules pause <schedule>")]
    Pause { schedule: String },
    /// Let a paused schedule fire again.
    #[command(after_help = "Example:\n  strata schedules resume <schedule>")]
    Resume { schedule: String },
}

#[derive(Debug, Args)]
pub struct ScheduleAddArgs {
    #[arg(long)]
    pub source: Option<String>,
    /// Five fields (or six, with seconds), e.g. `0 3 * * *`.
    #[arg(long)]
    pub cron: String,
    #[arg(long = "type", value_enum)]
    pub backup_type: Option<BackupTypeArg>,
    /// An IANA time zone (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    #[arg(long)]
    pub keep_last: Option<u32>,
    #[arg(long)]
    pub keep_daily: Option<u32>,
    #[arg(long)]
    pub keep_weekly: Option<u32>,
    #[arg(long)]
    pub keep_monthly: Option<u32>,
    /// Run a missed fire once after the server was down.
    #[arg(long)]
    pub catch_up: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[arg(long)]
    pub source: Option<String>,
    /// Report what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub keep_last: Option<u32>,
    #[arg(long)]
    pub daily: Option<u32>,
    #[arg(long)]
    pub weekly: Option<u32>,
    #[arg(long)]
    pub monthly: Option<u32>,
    #[arg(long)]
    pub yearly: Option<u32>,
    /// Delete backups older than this many days.
    #[arg(long)]
    pub retention_days: Option<u32>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    pub backup: String,
    /// Restore it into a scratch directory and compare, instead of reading the packs.
    #[arg(long)]
    pub drill: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Viewer,
    #[value(name = "backup_operator")]
    BackupOperator,
    Admin,
}

impl RoleArg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::BackupOperator => "backup_operator",
            Self::Admin => "admin",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// List API keys.
    #[command(after_help = "Example:\n  strata keys ls")]
    Ls,
    /// Create an API key; it is printed once.
    #[command(after_help = "Example:\n  KEY=$(strata keys create ci --role backup_operator)")]
    Create {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Revoke an API key.
    #[command(after_help = "Example:\n  strata keys revoke <key id>")]
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// List users.
    #[command(after_help = "Example:\n  strata users ls")]
    Ls,
    /// Add a user; the password is asked for (or read from stdin when piped).
    #[command(after_help = "Example:\n  strata users add ops@example.com --role backup_operator")]
    Add {
        email: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Delete a user (their sessions end).
    #[command(after_help = "Example:\n  strata users rm <user id>")]
    Rm { id: String },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are successes; anything else is a usage error (2).
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Command::Completions { shell } = &cli.command {
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "strata",
            &mut std::io::stdout(),
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(()) => exit::OK,
        Err(failure) => {
            eprintln!("strata: {}", failure.message);
            failure.code
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command a user runs shows an example in its `--help`.
    #[test]
    fn every_command_has_an_example() {
        fn visit(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let name = format!("{path} {}", cmd.get_name());
            let leaf = cmd.get_subcommands().next().is_none();
            if leaf && cmd.get_name() != "help" {
                let help = cmd
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                if !help.contains("Example") {
                    missing.push(name.clone());
                }
            }
            for sub in cmd.get_subcommands() {
                visit(sub, &name, missing);
            }
        }
        let mut missing = Vec::new();
        visit(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no example in: {missing:?}");
    }
}
