//! The conformance suite against both backends (posix in a temp dir, S3 against the server
//! scripts/test.sh starts), plus the cases only one backend has: posix directory handling and
//! crash safety under kill -9, S3 upload limits and multipart paths.

mod posix {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use agola_objectstorage::conformance::list_paths;
    use agola_objectstorage::{Error, ObjectStorage, Posix};

    async fn fresh(_case: &'static str) -> (Arc<dyn ObjectStorage>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let ost = Posix::new(dir.path()).expect("open posix storage");
        (Arc::new(ost), dir)
    }

    agola_objectstorage::conformance_tests!(fresh);

    #[tokio::test]
    async fn long_keys() {
        let (ost, _dir) = fresh("long_keys").await;
        agola_objectstorage::conformance::long_keys(ost).await;
    }

    #[tokio::test]
    async fn prefix_keys_are_not_objects() {
        let (ost, _dir) = fresh("prefix_keys_are_not_objects").await;
        agola_objectstorage::conformance::prefix_keys_are_not_objects(ost).await;
    }

    #[tokio::test]
    async fn delete_removes_empty_parents_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ost = Posix::new(dir.path()).expect("open");
        ost.write_bytes("a/b/c/obj", b"1", false)
            .await
            .expect("write");
        ost.write_bytes("a/keep", b"2", false).await.expect("write");
        ost.delete("a/b/c/obj").await.expect("delete");
        let data = ost.data_dir();
        assert!(!data.join("a/b").exists(), "emptied parents must go");
        assert!(data.join("a/keep").is_file());
        ost.delete("a/keep").await.expect("delete");
        assert!(!data.join("a").exists());
        assert!(data.is_dir(), "the data dir itself stays");
        // The tree is usable again right away.
        ost.write_bytes("a/b/c/obj", b"3", true)
            .await
            .expect("write");
        assert_eq!(ost.read_to_vec("a/b/c/obj").await.expect("read"), b"3");
    }

    #[tokio::test]
    async fn file_and_directory_conflicts_are_invalid_paths() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ost = Posix::new(dir.path()).expect("open");
        ost.write_bytes("x/y", b"file", false).await.expect("write");
        for p in ["x/y/z", "x/y/z/w"] {
            match ost.write_bytes(p, b"below a file", false).await {
                Err(Error::InvalidPath { .. }) => {}
                other => panic!("{p}: {other:?}"),
            }
        }
        match ost.write_bytes("x", b"over a directory", false).await {
            Err(Error::InvalidPath { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(ost.read_to_vec("x/y").await.expect("read"), b"file");
        let tmp_left = std::fs::read_dir(ost.tmp_dir()).expect("tmp dir").count();
        assert_eq!(tmp_left, 0, "failed writes must remove their temp files");
    }

    #[tokio::test]
    async fn temp_files_are_invisible_and_stale_ones_are_cleaned() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ost: Arc<dyn ObjectStorage> = Arc::new(Posix::new(dir.path()).expect("open"));
        let tmp = dir.path().join("tmp");
        let stale = tmp.join("stale");
        let fresh = tmp.join("fresh");
        std::fs::write(&stale, b"old").expect("write");
        std::fs::write(&fresh, b"new").expect("write");
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(2 * 3600)))
            .expect("age the stale file");
        ost.write_bytes("obj", b"1", false).await.expect("write");
        assert_eq!(list_paths(&ost, "", None, true).await, ["obj"]);

        Posix::new(dir.path()).expect("reopen");
        assert!(!stale.exists(), "a stale temp file is a crash leftover");
        assert!(
            fresh.exists(),
            "a recent temp file may belong to a live write"
        );
    }

    #[tokio::test]
    async fn listing_into_a_subdirectory_reads_only_that_subtree() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ost: Arc<dyn ObjectStorage> = Arc::new(Posix::new(dir.path()).expect("open"));
        ost.write_bytes("a/b/c", b"1", false).await.expect("write");
        ost.write_bytes("z/obj", b"2", false).await.expect("write");
        // An unreadable sibling would fail a walk of the whole tree.
        let z = dir.path().join("data/z");
        let mut perms = std::fs::metadata(&z).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o000);
        std::fs::set_permissions(&z, perms.clone()).expect("chmod");
        let can_read_anyway = std::fs::read_dir(&z).is_ok(); // root ignores permissions
        assert_eq!(list_paths(&ost, "a/b/", None, true).await, ["a/b/c"]);
        assert_eq!(list_paths(&ost, "a/", Some("a/b/b"), true).await, ["a/b/c"]);
        if !can_read_anyway {
            let res: Result<Vec<_>, _> =
                futures::TryStreamExt::try_collect(ost.list("", None, true)).await;
            assert!(
                res.is_err(),
                "a full walk does reach the unreadable directory"
            );
        }
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&z, perms).expect("chmod back");
    }
}

mod kill9 {
    //! A writer process overwriting one key is killed with SIGKILL mid-write, again and again;
    //! the key must always hold one complete content and no torn file may become visible.

    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::Duration;

    use agola_objectstorage::conformance::list_paths;
    use agola_objectstorage::{ObjectStorage, Posix};

    const DIR_ENV: &str = "AGOLA_OST_KILL9_DIR";
    const KEY: &str = "crash/obj";

    fn contents() -> (Vec<u8>, Vec<u8>) {
        (
            vec![b'a'; 3 * 1024 * 1024],
            vec![b'b'; 2 * 1024 * 1024 + 17],
        )
    }

    /// The writer process: started (re-executing this test binary) by
    /// `posix_overwrite_survives_kill9`, never on its own.
    #[tokio::test]
    #[ignore = "helper process of posix_overwrite_survives_kill9"]
    async fn kill9_writer_child() {
        let Ok(dir) = std::env::var(DIR_ENV) else {
            eprintln!("{DIR_ENV} not set: this is a helper process, nothing to do");
            return;
        };
        let ost = Posix::new(dir).expect("open");
        let (a, b) = contents();
        for i in 0u64.. {
            let (data, persist) = if i % 2 == 0 {
                (&b, i % 4 == 0)
            } else {
                (&a, false)
            };
            if i % 3 == 0 {
                let mut src = &data[..];
                ost.write(KEY, &mut src, None, persist)
                    .await
                    .expect("write");
            } else {
                ost.write_bytes(KEY, data, persist).await.expect("write");
            }
            if i == 0 {
                println!("ready");
                std::io::stdout().flush().expect("flush");
            }
        }
    }

    #[test]
    fn posix_overwrite_survives_kill9() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let ost: Arc<dyn ObjectStorage> = Arc::new(Posix::new(dir.path()).expect("open"));
        let (a, b) = contents();
        rt.block_on(ost.write_bytes(KEY, &a, true)).expect("seed");
        let exe = std::env::current_exe().expect("test binary path");

        for round in 0..8u64 {
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "kill9::kill9_writer_child",
                    "--ignored",
                    "--nocapture",
                ])
                .env(DIR_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn the writer");
            let stdout = child.stdout.take().expect("child stdout");
            let ready = BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.trim() == "ready");
            assert!(ready, "the writer exited before its first write");
            // Not a readiness wait (the writer already said it is running): a varying delay
            // so the kill lands at different points of a write cycle.
            std::thread::sleep(Duration::from_millis(3 + 11 * round));
            child.kill().expect("SIGKILL the writer");
            child.wait().expect("reap the writer");

            let got = rt.block_on(ost.read_to_vec(KEY)).expect("read after kill");
            assert!(
                got == a || got == b,
                "round {round}: torn object of {} bytes",
                got.len()
            );
            let size = rt.block_on(ost.stat(KEY)).expect("stat").size;
            assert_eq!(size, got.len() as u64);
            assert_eq!(rt.block_on(list_paths(&ost, "", None, true)), [KEY]);
        }
        // Leftover temp files are allowed, but only in tmp: data holds the one object. Their
        // number shows how many kills landed mid-write.
        let leftovers = std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count();
        eprintln!("temp files left by killed writes: {leftovers}");
        let data_files: Vec<_> = walk(&dir.path().join("data"));
        assert_eq!(data_files.len(), 1, "{data_files:?}");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}

mod s3 {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    use agola_objectstorage::conformance::{DataGen, hash_object};
    use agola_objectstorage::{Error, ObjectStorage, S3, S3Config};

    const MIB: u64 = 1024 * 1024;

    fn env(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run the tests through scripts/test.sh, which starts the S3 \
                 test server and exports AGOLA_TEST_S3_ENDPOINT, AGOLA_TEST_S3_ACCESS_KEY and \
                 AGOLA_TEST_S3_SECRET_KEY"
            )
        })
    }

    /// A bucket name no other test or run uses: lowercase, at most 63 characters.
    fn unique_bucket(case: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let case: String = case
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(24)
            .collect();
        let name = format!(
            "ost-{}-{:x}-{:x}-{}",
            case.trim_matches('-'),
            std::process::id(),
            nanos % (1 << 48),
            N.fetch_add(1, Ordering::Relaxed)
        );
        assert!(name.len() <= 63, "{name}");
        name
    }

    fn config(case: &str) -> S3Config {
        S3Config {
            endpoint: env("AGOLA_TEST_S3_ENDPOINT"),
            bucket: unique_bucket(case),
            access_key: env("AGOLA_TEST_S3_ACCESS_KEY"),
            secret_access_key: env("AGOLA_TEST_S3_SECRET_KEY"),
            // The smallest part size: more parts per object, more boundaries exercised.
            part_size: 5 * MIB,
            ..S3Config::default()
        }
    }

    async fn fresh(case: &'static str) -> (Arc<dyn ObjectStorage>, ()) {
        let ost = S3::new(config(case))
            .await
            .expect("connect to the S3 test server");
        (Arc::new(ost), ())
    }

    // `long_keys` and `prefix_keys_are_not_objects` are not run here: s3s-fs cannot pass them
    // (see the conformance module docs), real S3 does.
    agola_objectstorage::conformance_tests!(fresh);

    #[tokio::test]
    async fn unknown_size_over_the_limit_fails_and_creates_nothing() {
        // Above one part: the multipart upload is aborted. Below one part: no request at all.
        for (max, len) in [
            (6 * MIB, 7 * MIB),
            (6 * MIB, 6 * MIB + 1),
            (2 * MIB, 3 * MIB),
        ] {
            let ost = S3::new(S3Config {
                max_unknown_size: max,
                ..config("over-limit")
            })
            .await
            .expect("connect");
            let mut src = DataGen::new(1, len);
            match ost.write("big", &mut src, None, false).await {
                Err(Error::InvalidInput(msg)) => {
                    assert!(
                        msg.contains(&max.to_string()) && msg.contains("max_unknown_size"),
                        "the error names the limit: {msg}"
                    );
                }
                other => panic!("max {max} len {len}: {other:?}"),
            }
            assert!(ost.stat("big").await.is_err_and(|e| e.is_not_exist()));
            // Exactly the limit is fine.
            let mut src = DataGen::new(2, max);
            ost.write("big", &mut src, None, false)
                .await
                .expect("a write of exactly the limit");
            assert_eq!(ost.stat("big").await.expect("stat").size, max);
        }
    }

    #[tokio::test]
    async fn known_size_above_the_single_put_limit_goes_multipart() {
        let ost: Arc<dyn ObjectStorage> = Arc::new(
            S3::new(S3Config {
                max_single_put_size: 6 * MIB,
                ..config("known-multipart")
            })
            .await
            .expect("connect"),
        );
        let len = 13 * MIB + 5;
        let mut src = DataGen::new(3, len);
        ost.write("obj", &mut src, Some(len), false)
            .await
            .expect("write");
        assert_eq!(ost.stat("obj").await.expect("stat").size, len);
        assert_eq!(
            hash_object(&ost, "obj").await,
            DataGen::new(3, len).sha256().await
        );

        // Short and long sources fail in any part and leave the old object.
        for (declared, actual) in [(len, 8 * MIB), (len, len - 1), (11 * MIB, 12 * MIB)] {
            let mut src = DataGen::new(4, actual);
            match ost.write("obj", &mut src, Some(declared), false).await {
                Err(Error::InvalidInput(_)) => {}
                other => panic!("declared {declared} actual {actual}: {other:?}"),
            }
            assert_eq!(
                hash_object(&ost, "obj").await,
                DataGen::new(3, len).sha256().await
            );
        }
    }

    #[tokio::test]
    async fn reopening_an_existing_bucket_works() {
        let cfg = config("reopen");
        let first = S3::new(cfg.clone()).await.expect("create");
        first.write_bytes("k", b"v", false).await.expect("write");
        let second = S3::new(cfg).await.expect("reopen");
        assert_eq!(second.read_to_vec("k").await.expect("read"), b"v");
    }

    #[tokio::test]
    async fn bad_config_is_rejected_before_connecting() {
        for cfg in [
            S3Config {
                part_size: 4 * MIB,
                ..config("bad")
            },
            S3Config {
                part_size: 65 * MIB,
                ..config("bad")
            },
            S3Config {
                endpoint: "ftp://x".into(),
                ..config("bad")
            },
        ] {
            assert!(matches!(S3::new(cfg).await, Err(Error::InvalidInput(_))));
        }
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let cfg = S3Config {
            endpoint: "http://127.0.0.1:1".into(),
            ..config("down")
        };
        match S3::new(cfg).await {
            Err(Error::Unavailable(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
