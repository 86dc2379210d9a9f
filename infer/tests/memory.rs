//! Streaming: the rows of a large folder are written as they are ready, so the command's
//! peak memory does not grow with the number of images. (Its own test binary, so that no
//! other test's processes run beside the measured ones.)

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{fixture, hands_infer_command, have_ort};
use hands_tests::images::png;
use image::{Rgb, RgbImage};

/// Runs hands-infer on `folder` (rows into a file) and returns its peak resident memory in
/// KiB, as the kernel accounted it for that one process.
#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which also returns its resource usage"
)]
fn peak_kib(folder: &Path, rows: &Path) -> i64 {
    let child = hands_infer_command(&["--model".as_ref(), fixture("tiny.onnx").as_os_str()])
        .args(["--threads", "2", "--quiet", "--output"])
        .arg(rows)
        .arg(folder)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, and wait4 writes it for our own child,
    // which is waited for here only (the Child handle is not waited on afterwards).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    usage.ru_maxrss
}

fn write_images(folder: &Path, n: usize) {
    std::fs::create_dir_all(folder).unwrap();
    for i in 0..n {
        let image = RgbImage::from_fn(8, 8, |x, y| {
            Rgb([(i % 251) as u8, x as u8 * 30, y as u8 * 30])
        });
        std::fs::write(folder.join(format!("{i:05}.png")), png(&image)).unwrap();
    }
}

#[test]
fn peak_memory_stays_flat_from_a_thousand_to_ten_thousand_images() {
    if !have_ort("peak_memory_stays_flat_from_a_thousand_to_ten_thousand_images") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = (dir.path().join("small"), dir.path().join("large"));
    write_images(&small, 1_000);
    write_images(&large, 10_000);
    let small_kib = peak_kib(&small, &dir.path().join("small.csv"));
    let large_kib = peak_kib(&large, &dir.path().join("large.csv"));
    let rows = std::fs::read_to_string(dir.path().join("large.csv")).unwrap();
    assert_eq!(rows.lines().count(), 10_001);
    // Ten times the images may add their paths and rows' bookkeeping (a few MB), never the
    // images: 9,000 more decoded inputs alone would take 9000 x 12 KiB = 105 MiB.
    assert!(
        large_kib < small_kib + 16 * 1024,
        "peak {small_kib} KiB for 1,000 images, {large_kib} KiB for 10,000"
    );
}
