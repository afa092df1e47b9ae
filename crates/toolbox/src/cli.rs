//! Command line parsing and dispatch. Hand written (no clap) to keep the binary small; the
//! surface is the one the executor uses:
//!
//! ```text
//! agola-toolbox sleeper
//! agola-toolbox exec [-e JSON] [-w DIR] [-u USER] -- CMD [ARG...]
//! agola-toolbox createfile                       < content   (prints the path)
//! agola-toolbox expanddir DIR                                (prints the path)
//! agola-toolbox mkdir DIR...
//! agola-toolbox archive                          < request JSON  (tar on stdout or out_file)
//! agola-toolbox unarchive --destdir DIR [--overwrite]  < tar
//! agola-toolbox template                         < template  (prints the rendering)
//! ```
//!
//! Printed paths and renderings have no trailing newline (as Agola's toolbox).

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::exec::{ExecOptions, parse_env_json};
use crate::{Error, Result, archive, exec, files, paths, sleeper, template, unarchive};

/// Usage text printed by `help` and on usage errors.
pub const USAGE: &str = "usage: agola-toolbox <command> [args]

commands:
  sleeper                                   wait forever as PID 1, reaping zombies; exit on SIGTERM/SIGINT
  exec [-e JSON] [-w DIR] [-u USER] -- CMD  exec CMD with env overlay, working dir and user
  createfile                                stdin into a new temp file; prints its path
  expanddir DIR                             expand ~ and make absolute; prints the path
  mkdir DIR...                              create directories with parents (~ expanded)
  archive                                   JSON request on stdin; tar on stdout or out_file
  unarchive --destdir DIR [--overwrite]     extract a tar from stdin (hardened)
  template                                  render a cache-key template from stdin
";

fn usage(msg: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{msg}\n\n{USAGE}"))
}

fn utf8(arg: &OsStr, what: &str) -> Result<String> {
    arg.to_str()
        .map(String::from)
        .ok_or_else(|| usage(format!("{what} is not valid UTF-8")))
}

/// Splits `--name=value` into (`--name`, Some(value)).
fn split_flag(arg: &OsStr) -> (&OsStr, Option<&OsStr>) {
    let bytes = arg.as_bytes();
    if bytes.starts_with(b"--")
        && let Some(i) = bytes.iter().position(|b| *b == b'=')
    {
        return (
            OsStr::from_bytes(&bytes[..i]),
            Some(OsStr::from_bytes(&bytes[i + 1..])),
        );
    }
    (arg, None)
}

/// Parses the arguments of `exec` (after the subcommand name).
pub fn parse_exec(args: &[OsString]) -> Result<ExecOptions> {
    let mut opts = ExecOptions::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_os_str();
        if arg == "--" {
            i += 1;
            break;
        }
        if !arg.as_bytes().starts_with(b"-") {
            break;
        }
        let (name, inline) = split_flag(arg);
        let mut value = || -> Result<OsString> {
            if let Some(v) = inline {
                return Ok(v.to_os_string());
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| usage(format!("exec: {} needs a value", name.to_string_lossy())))
        };
        match name.as_bytes() {
            b"-e" | b"--env" => opts.env = parse_env_json(&utf8(&value()?, "-e")?)?,
            b"-w" | b"--workingdir" | b"--working-dir" => {
                opts.working_dir = Some(PathBuf::from(value()?));
            }
            b"-u" | b"--user" => opts.user = Some(utf8(&value()?, "-u")?),
            _ => {
                return Err(usage(format!(
                    "exec: unknown option {}",
                    arg.to_string_lossy()
                )));
            }
        }
        i += 1;
    }
    opts.command = args[i.min(args.len())..].to_vec();
    if opts.command.is_empty() {
        return Err(usage("exec: missing command"));
    }
    Ok(opts)
}

/// Parsed `unarchive` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnarchiveArgs {
    pub dest_dir: PathBuf,
    pub overwrite: bool,
}

/// Parses the arguments of `unarchive`.
pub fn parse_unarchive(args: &[OsString]) -> Result<UnarchiveArgs> {
    let mut dest_dir = None;
    let mut overwrite = false;
    let mut i = 0;
    while i < args.len() {
        let (name, inline) = split_flag(&args[i]);
        match name.as_bytes() {
            b"--destdir" => {
                let v = match inline {
                    Some(v) => v.to_os_string(),
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| usage("unarchive: --destdir needs a value"))?
                    }
                };
                dest_dir = Some(PathBuf::from(v));
            }
            b"--overwrite" if inline.is_none() => overwrite = true,
            _ => {
                return Err(usage(format!(
                    "unarchive: unexpected argument {}",
                    args[i].to_string_lossy()
                )));
            }
        }
        i += 1;
    }
    let dest_dir = dest_dir
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| usage("unarchive: --destdir is required"))?;
    Ok(UnarchiveArgs {
        dest_dir,
        overwrite,
    })
}

fn one_dir<'a>(cmd: &str, args: &'a [OsString]) -> Result<&'a Path> {
    match args {
        [dir] if !dir.is_empty() => Ok(Path::new(dir)),
        [] => Err(usage(format!("{cmd}: missing directory"))),
        _ => Err(usage(format!("{cmd}: expected one directory"))),
    }
}

fn no_args(cmd: &str, args: &[OsString]) -> Result<()> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(usage(format!("{cmd}: takes no arguments")))
    }
}

fn print(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .ctx(|| "cannot write to stdout")
}

fn read_stdin_string(what: &str) -> Result<String> {
    let mut s = String::new();
    io::stdin()
        .lock()
        .read_to_string(&mut s)
        .ctx(|| format!("cannot read the {what} from stdin"))?;
    Ok(s)
}

/// Runs the toolbox with `args` (without the program name).
pub fn run(args: Vec<OsString>) -> Result<()> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(usage("missing command"));
    };
    match cmd.as_bytes() {
        b"sleeper" => {
            no_args("sleeper", rest)?;
            sleeper::run()
        }
        b"exec" => {
            let opts = parse_exec(rest)?;
            exec::run(&opts).map(|never| match never {})
        }
        b"createfile" => {
            no_args("createfile", rest)?;
            let path = files::create_file(&mut io::stdin().lock())?;
            print(path.as_os_str().as_bytes())
        }
        b"expanddir" => {
            let path = files::expanddir(one_dir("expanddir", rest)?)?;
            print(path.as_os_str().as_bytes())
        }
        b"mkdir" => {
            if rest.is_empty() {
                return Err(usage("mkdir: missing directory"));
            }
            for dir in rest {
                files::mkdir(Path::new(dir))?;
            }
            Ok(())
        }
        b"archive" => {
            no_args("archive", rest)?;
            let input = read_stdin_string("archive request")?;
            let request: archive::ArchiveRequest = serde_json::from_str(&input)
                .map_err(|e| Error::InvalidInput(format!("invalid archive request: {e}")))?;
            archive::run(&request, &mut io::stdout().lock(), &mut io::stderr())
        }
        b"unarchive" => {
            let a = parse_unarchive(rest)?;
            let dest = paths::expand_dir(&a.dest_dir)?;
            unarchive::run(
                io::BufReader::new(io::stdin().lock()),
                &dest,
                unarchive::Options {
                    overwrite: a.overwrite,
                },
                &mut io::stderr(),
            )
        }
        b"template" => {
            no_args("template", rest)?;
            let src = read_stdin_string("template")?;
            print(template::render_str(&src)?.as_bytes())
        }
        b"help" | b"-h" | b"--help" => print(USAGE.as_bytes()),
        other => Err(usage(format!(
            "unknown command {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_exec() {
        let o = parse_exec(&os(&[
            "-e",
            r#"{"A":"1"}"#,
            "-w",
            "/work",
            "-u",
            "1000:1000",
            "--",
            "/bin/sh",
            "-c",
            "echo -e",
        ]))
        .expect("parse");
        assert_eq!(o.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(o.working_dir, Some(PathBuf::from("/work")));
        assert_eq!(o.user.as_deref(), Some("1000:1000"));
        assert_eq!(o.command, os(&["/bin/sh", "-c", "echo -e"]));

        let o = parse_exec(&os(&["--env={}", "--workingdir=/w", "ls", "-l"])).expect("parse");
        assert_eq!(o.working_dir, Some(PathBuf::from("/w")));
        assert_eq!(o.command, os(&["ls", "-l"]));
    }

    #[test]
    fn exec_usage_errors() {
        assert!(matches!(
            parse_exec(&os(&["-e", "{}"])),
            Err(Error::Usage(_))
        ));
        assert!(matches!(parse_exec(&os(&["-w"])), Err(Error::Usage(_))));
        assert!(matches!(
            parse_exec(&os(&["-x", "--", "ls"])),
            Err(Error::Usage(_))
        ));
        assert!(matches!(parse_exec(&os(&["--"])), Err(Error::Usage(_))));
        assert!(matches!(
            parse_exec(&os(&["-e", "not json", "--", "ls"])),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn parses_unarchive() {
        let a = parse_unarchive(&os(&["--destdir", "/d", "--overwrite"])).expect("parse");
        assert_eq!(
            a,
            UnarchiveArgs {
                dest_dir: PathBuf::from("/d"),
                overwrite: true
            }
        );
        let a = parse_unarchive(&os(&["--destdir=~/x"])).expect("parse");
        assert!(!a.overwrite);
        assert!(parse_unarchive(&os(&[])).is_err());
        assert!(parse_unarchive(&os(&["--destdir"])).is_err());
        assert!(parse_unarchive(&os(&["--destdir", "/d", "extra"])).is_err());
    }

    #[test]
    fn unknown_command_is_usage_error() {
        let e = run(os(&["shell"])).expect_err("unknown");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("unknown command \"shell\""));
        assert!(matches!(run(vec![]), Err(Error::Usage(_))));
    }
}
