//! The built components against what their runtimes give them: the 0.2 build exports
//! `wasi:http/incoming-handler@0.2.x` and imports nothing outside `greeter:app/http-app` in
//! `wit/`; the 0.3 build exports `wasi:http/handler@0.3.x` and imports exactly the interfaces
//! listed below.
//!
//! It reads the release builds: `cargo build --target wasm32-wasip2 --release -p greeter
//! -p greeter-p3` first (`make test` does).

use std::collections::BTreeSet;

use wit_parser::decoding::{DecodedWasm, decode};
use wit_parser::{Resolve, WorldId, WorldItem, WorldKey};

const WASM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/wasm32-wasip2/release/greeter.wasm"
);
const WASM_P3: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/wasm32-wasip2/release/greeter_p3.wasm"
);
const WIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit");

/// A built component's own world: what it imports and exports.
fn component_world(wasm: &str) -> (Resolve, WorldId) {
    let bytes = std::fs::read(wasm).unwrap_or_else(|error| {
        panic!(
            "cannot read {wasm}: {error}. Build it first: `cargo build --target wasm32-wasip2 \
             --release -p greeter -p greeter-p3` (`make test` does)"
        )
    });
    match decode(&bytes).expect("the .wasm decodes") {
        DecodedWasm::Component(resolve, world) => (resolve, world),
        DecodedWasm::WitPackage(..) => panic!("{wasm} is a WIT package, not a component"),
    }
}

/// `greeter:app/http-app` as `wit/` defines it.
fn http_app_world() -> (Resolve, WorldId) {
    let mut resolve = Resolve::new();
    let (package, _) = resolve.push_dir(WIT).expect("wit/ resolves");
    let world = resolve
        .select_world(&[package], Some("http-app"))
        .expect("wit/ has http-app");
    (resolve, world)
}

/// Interface names without their patch version (`wasi:http/types@0.2`): spin-sdk binds WASI
/// 0.2.0 while `wit/` says 0.2.12, and a host serving 0.2.12 serves 0.2.0 as well. Anything
/// that is not an interface (a bare function or type) is listed as it is, so that it stands out.
fn names<'a>(
    resolve: &Resolve,
    items: impl Iterator<Item = (&'a WorldKey, &'a WorldItem)>,
) -> BTreeSet<String> {
    items
        .map(|(key, item)| match item {
            WorldItem::Interface { id, .. } => {
                let name = resolve
                    .id_of(*id)
                    .unwrap_or_else(|| resolve.name_world_key(key));
                without_patch(&name)
            }
            WorldItem::Function(function) => format!("function {}", function.name),
            WorldItem::Type { id, .. } => format!("type {:?}", resolve.types[*id].name),
        })
        .collect()
}

fn without_patch(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((without, _patch)) if name.contains('@') => without.to_owned(),
        _ => name.to_owned(),
    }
}

fn imports(resolve: &Resolve, world: WorldId) -> BTreeSet<String> {
    names(resolve, resolve.worlds[world].imports.iter())
}

fn exports(resolve: &Resolve, world: WorldId) -> BTreeSet<String> {
    names(resolve, resolve.worlds[world].exports.iter())
}

#[test]
fn exports_exactly_the_wasi_http_incoming_handler() {
    let (resolve, world) = component_world(WASM);
    assert_eq!(
        exports(&resolve, world),
        BTreeSet::from(["wasi:http/incoming-handler@0.2".to_owned()])
    );
}

#[test]
fn imports_only_interfaces_of_the_http_app_world() {
    let (component, component_world) = component_world(WASM);
    let (wit, http_app) = http_app_world();
    let allowed = imports(&wit, http_app);
    let imported = imports(&component, component_world);
    let outside: Vec<_> = imported.difference(&allowed).collect();
    assert!(
        outside.is_empty(),
        "imports outside greeter:app/http-app: {outside:?}"
    );
    // The component does use the store and the variables, so the check did see its imports.
    for used in [
        "fermyon:spin/key-value@2.0",
        "wasi:keyvalue/store@0.2",
        "wasi:keyvalue/atomics@0.2",
        "wasi:keyvalue/batch@0.2",
        "fermyon:spin/variables@2.0",
        "wasi:random/random@0.2",
    ] {
        assert!(
            imported.contains(used),
            "{used} is not imported: {imported:?}"
        );
    }
}

#[test]
fn the_0_3_build_exports_exactly_the_wasi_http_handler() {
    let (resolve, world) = component_world(WASM_P3);
    assert_eq!(
        exports(&resolve, world),
        BTreeSet::from(["wasi:http/handler@0.3".to_owned()])
    );
}

/// What Spin 4 and greeter-host give a spin-sdk 7 component: `wasi:http@0.3` for outbound
/// HTTP, Spin's 3.0.0 key-value and variables, the draft `wasi:keyvalue` atomics and batch;
/// and the WASI 0.2 interfaces that Rust's std (target `wasm32-wasip2`) and the `wasi` crate
/// use. No `wasi:http@0.2`: the 0.2 adapter is not linked in.
#[test]
fn the_0_3_build_imports_exactly_its_interfaces() {
    let (resolve, world) = component_world(WASM_P3);
    let expected = [
        "spin:key-value/key-value@3.0",
        "spin:variables/variables@3.0",
        "wasi:cli/environment@0.2",
        "wasi:cli/exit@0.2",
        "wasi:cli/stderr@0.2",
        "wasi:cli/stdin@0.2",
        "wasi:cli/stdout@0.2",
        "wasi:cli/terminal-input@0.2",
        "wasi:cli/terminal-output@0.2",
        "wasi:cli/terminal-stderr@0.2",
        "wasi:cli/terminal-stdin@0.2",
        "wasi:cli/terminal-stdout@0.2",
        "wasi:clocks/monotonic-clock@0.2",
        "wasi:clocks/monotonic-clock@0.3",
        "wasi:clocks/types@0.3",
        "wasi:clocks/wall-clock@0.2",
        "wasi:http/client@0.3",
        "wasi:http/types@0.3",
        "wasi:io/error@0.2",
        "wasi:io/poll@0.2",
        "wasi:io/streams@0.2",
        "wasi:keyvalue/atomics@0.2",
        "wasi:keyvalue/batch@0.2",
        "wasi:keyvalue/store@0.2",
        "wasi:random/insecure-seed@0.2",
        "wasi:random/random@0.2",
    ];
    assert_eq!(imports(&resolve, world), expected.map(str::to_owned).into(),);
}

#[test]
fn the_comparison_sees_imports_outside_the_world() {
    let (wit, http_app) = http_app_world();
    let allowed = imports(&wit, http_app);
    assert!(allowed.contains("wasi:http/outgoing-handler@0.2"));
    assert!(
        allowed.contains("wasi:io/streams@0.2"),
        "transitive imports are part of the world"
    );

    let mut resolve = Resolve::new();
    let package = resolve
        .push_str("outside.wit", "package test:outside@1.0.0; interface store { get: func(); } world w { import store; import wasi-log: func(); }")
        .expect("valid WIT");
    let world = resolve
        .select_world(&[package], Some("w"))
        .expect("the world");
    let foreign = imports(&resolve, world);
    assert_eq!(
        foreign.difference(&allowed).cloned().collect::<Vec<_>>(),
        ["function wasi-log", "test:outside/store@1.0"]
    );
}

#[test]
fn strips_only_the_patch_version() {
    assert_eq!(
        without_patch("wasi:http/types@0.2.6"),
        "wasi:http/types@0.2"
    );
    assert_eq!(
        without_patch("fermyon:spin/key-value@2.0.0"),
        "fermyon:spin/key-value@2.0"
    );
    assert_eq!(without_patch("local:x/y"), "local:x/y");
}
