//! Start-up: manifest errors name the field and exit 1, a missing component says how to
//! build it, and a second start loads the compiled component from the cache; compiling
//! leaves no memory behind.

mod support;

use support::*;

fn write_manifest(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn fixture_manifest_text() -> String {
    let wasm = workspace().join("target/wasm32-wasip2/release/faulty.wasm");
    std::fs::read_to_string(faulty_manifest()).unwrap().replace(
        "../../../target/wasm32-wasip2/release/faulty.wasm",
        wasm.to_str().unwrap(),
    )
}

#[test]
fn an_unknown_manifest_field_is_named_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let text = fixture_manifest_text().replace("key_value_stores", "key_value_storez");
    let (status, stderr) = run_to_exit(HostBuilder::new(
        &write_manifest(dir.path(), &text),
        dir.path(),
    ));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown field `key_value_storez`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("at line "),
        "the position is given: {stderr}"
    );
}

#[test]
fn a_missing_component_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = fixture_manifest_text().replace("faulty.wasm", "absent.wasm");
    let builder = HostBuilder::new(&write_manifest(dir.path(), &text), dir.path())
        .env("SPIN_VARIABLE_SECRET_TOKEN", "t");
    let (status, stderr) = run_to_exit(builder);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("absent.wasm does not exist"), "{stderr}");
    assert!(
        stderr.contains("build it with `cargo build --target wasm32-wasip2 --release -p faulty`"),
        "{stderr}"
    );
}

#[test]
fn a_granted_store_must_be_configured_and_runtime_config_adds_stores() {
    let dir = tempfile::tempdir().unwrap();
    let text = fixture_manifest_text().replace(
        r#"key_value_stores = ["default"]"#,
        r#"key_value_stores = ["default", "cache"]"#,
    );
    let manifest = write_manifest(dir.path(), &text);
    let unconfigured =
        HostBuilder::new(&manifest, dir.path()).env("SPIN_VARIABLE_SECRET_TOKEN", "t");
    let (status, stderr) = run_to_exit(unconfigured);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "unknown key_value_stores label \"cache\" for component \"faulty\": add [key_value_store.cache]"
        ),
        "{stderr}"
    );

    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        "[key_value_store.cache]\ntype = \"spin\"\npath = \"cache.db\"\n",
    )
    .unwrap();
    let host = HostBuilder::new(&manifest, dir.path())
        .env("SPIN_VARIABLE_SECRET_TOKEN", "t")
        .arg("--runtime-config-file")
        .arg(&config)
        .start();
    assert_eq!(get(&host.url("/kv?label=cache")).body, "opened");
    assert!(
        dir.path().join("cache.db").exists(),
        "the store lives where the runtime config says"
    );
}

#[test]
fn an_invalid_runtime_config_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(&config, "[key_value_store.default]\ntype = \"dynamo\"\n").unwrap();
    let builder = faulty_host(dir.path())
        .arg("--runtime-config-file")
        .arg(&config);
    let (status, stderr) = run_to_exit(builder);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("dynamo"), "{stderr}");
}

#[test]
fn the_second_start_uses_the_compile_cache() {
    let state = tempfile::tempdir().unwrap();
    let start = || faulty_host(state.path()).start();
    let cached_files = || std::fs::read_dir(state.path().join("cache")).map_or(0, |d| d.count());
    let first = start();
    assert_eq!(get(&first.url("/ok")).status, 200);
    drop(first);
    assert_eq!(
        cached_files(),
        1,
        "the first start writes one compiled component"
    );
    let entry = std::fs::read_dir(state.path().join("cache"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let written = std::fs::metadata(&entry).unwrap().modified().unwrap();

    let second = start();
    assert_eq!(get(&second.url("/ok")).status, 200);
    assert_eq!(cached_files(), 1);
    assert_eq!(
        std::fs::metadata(&entry).unwrap().modified().unwrap(),
        written,
        "the cache entry was reused, not rewritten"
    );
}

/// Compiling leaves nothing behind: Cranelift's contexts, the compiling threads' freed memory
/// and the compiled bytes (about 60 MiB for the app) used to stay with the process for its
/// whole life.
#[test]
fn a_start_that_compiled_holds_no_more_memory_than_one_from_the_cache() {
    let state = tempfile::tempdir().unwrap();
    let anonymous_memory_mib = || {
        let host = HostBuilder::new(&app_manifest(), state.path()).start();
        assert_eq!(get(&host.url("/")).status, 200);
        std::thread::sleep(std::time::Duration::from_millis(500));
        let status = std::fs::read_to_string(format!("/proc/{}/status", host.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("RssAnon:"))
            .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap();
        kib / 1024
    };
    let compiled = anonymous_memory_mib();
    let from_cache = anonymous_memory_mib();
    assert!(
        compiled <= from_cache + 8,
        "after compiling: {compiled} MiB anonymous; from the cache: {from_cache} MiB"
    );
}

#[test]
fn a_compile_cache_that_cannot_be_written_is_skipped_with_a_warning() {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join("cache"),
        "a file where the directory would be",
    )
    .unwrap();
    let host = faulty_host(state.path()).start();
    assert_eq!(get(&host.url("/ok")).status, 200);
    assert!(
        host.stderr().contains("cannot write the compile cache"),
        "{}",
        host.stderr()
    );
}

#[test]
fn a_manifest_named_from_its_own_directory_keeps_its_state_beside_it_and_its_code_in_the_users_cache()
 {
    // What `make serve` runs: `up --from spin.toml` in the app's directory.
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), &fixture_manifest_text());
    let args = ["up", "--from", "spin.toml", "--listen", "127.0.0.1:0"];
    let user_cache = tempfile::tempdir().unwrap();
    // A compile cache shipped with the app, which must never be loaded: native code.
    std::fs::create_dir_all(dir.path().join(".greeter/cache")).unwrap();
    let mut builder = HostBuilder::exactly(args.map(std::ffi::OsStr::new))
        .env("SPIN_VARIABLE_SECRET_TOKEN", "t")
        .env("XDG_CACHE_HOME", user_cache.path().to_str().unwrap());
    builder.command_mut().current_dir(dir.path());
    let host = builder.start();
    assert_eq!(get(&host.url("/kv?label=default")).body, "opened");
    drop(host);
    assert!(
        dir.path().join(".greeter/sqlite_key_value.db").is_file(),
        "the default state directory is the manifest's"
    );
    let count = |path: std::path::PathBuf| std::fs::read_dir(path).map_or(0, |d| d.count());
    assert_eq!(count(dir.path().join(".greeter/cache")), 0);
    assert_eq!(
        count(user_cache.path().join("spin/greeter-host")),
        1,
        "compiled into the user's cache"
    );
}
