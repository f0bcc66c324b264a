//! How long one job keeps a chain busy: what the host's job interval must stay under.

use bm13xx::{ChipModel, Frequency, full_scan_seconds, versions_per_job};

/// ESP-Miner's `BM1397_FULLSCAN_MS` for one chip: 2^32 / (425 MHz × 672 small cores) = 15.04 ms.
#[test]
fn one_bm1397_scans_a_header_in_esp_miners_fullscan_time() {
    let seconds = full_scan_seconds(ChipModel::Bm1397, Frequency::from_khz(425_000), 1, 1);
    assert!((seconds * 1e3 - 15.04).abs() < 0.01, "{seconds}");
}

/// A 12-chip BM1397 chain with four AsicBoost midstates is through a job in about 5 ms; a
/// BM1370 rolling 16 version bits takes minutes.
#[test]
fn version_rolling_is_what_makes_jobs_last() {
    assert_eq!(versions_per_job(ChipModel::Bm1397, true), 4);
    assert_eq!(versions_per_job(ChipModel::Bm1370, true), 65_536);
    assert_eq!(versions_per_job(ChipModel::Bm1366, false), 1);
    let bm1397 = full_scan_seconds(
        ChipModel::Bm1397,
        Frequency::from_khz(425_000),
        12,
        versions_per_job(ChipModel::Bm1397, true),
    );
    assert!((bm1397 * 1e3 - 5.01).abs() < 0.01, "{bm1397}");
    let bm1370 = full_scan_seconds(
        ChipModel::Bm1370,
        Frequency::from_khz(525_000),
        1,
        versions_per_job(ChipModel::Bm1370, true),
    );
    assert!((bm1370 - 262.8).abs() < 0.1, "{bm1370}");
}
