//! Interop: the official Python SDKs from PyPI (`vikingdb-python-sdk` for V2, `volcengine` for
//! V1) drive the emulator over loopback HTTP: upsert, update, delete, fetch, and a wrong secret
//! key refused. `.ci/run` installs the SDKs into a virtualenv and sets `VIKINGSYNC_INTEROP_PYTHON`
//! to its interpreter. Without it the test fails under CI, and elsewhere says how to enable it.

use crate::harness::{AK, SK, start_emulator};
use vikingdb_emulator::{CollectionSpec, FaultConfig};

fn interop_spec(name: &str) -> CollectionSpec {
    let mut spec = crate::harness::spec(name, 0, false);
    spec.quota_rows_per_second = 1500;
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_drive_the_emulator() {
    let python = match std::env::var("VIKINGSYNC_INTEROP_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run the SDK interop test: .ci/run sets VIKINGSYNC_INTEROP_PYTHON"
            );
            eprintln!(
                "interop not run: set VIKINGSYNC_INTEROP_PYTHON to a python with tests/interop/requirements.txt \
                 installed (bash .ci/run does this)"
            );
            return;
        }
    };
    let emu = start_emulator(
        vec![interop_spec("interop_v2"), interop_spec("interop_v1")],
        FaultConfig::default(),
        7,
    )
    .await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/sdk_interop.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            "--endpoint",
            &emu.endpoint(),
            "--ak",
            AK,
            "--sk",
            SK,
            "--region",
            "cn-beijing",
        ])
        .args([
            "--v2-collection",
            "interop_v2",
            "--v1-collection",
            "interop_v1",
            "--deadline",
            "120",
        ])
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "SDK interop failed:\n{stdout}\n{stderr}");
    let passes = stdout.lines().filter(|l| l.starts_with("PASS")).count();
    assert!(passes >= 10, "expected the full set of checks to pass:\n{stdout}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("FAIL") || l.starts_with("SKIP")),
        "{stdout}"
    );
    let stats = emu.stats();
    assert!(
        stats.unauthorized >= 2,
        "both SDKs' wrong-key requests were refused: {stats:?}"
    );
    emu.shutdown().await;
}
