#![no_std]
#![forbid(unsafe_code)]

use bm13xx::{ChipAddressing, ChipModel, NonceLayout, NonceResponse};
use hashboard::board::BM1397_HASHBOARD_12;
use hashboard::mining::{Dispatcher, NonceOutcome};
use hashboard::thermal::{FanController, ThermalGuard};

/// Pulls the dispatcher, the nonce checks and the thermal decisions into the link.
pub extern "C" fn check_nonce(bytes: &[u8; 4], byte7: u8, temp_c: f32) -> u32 {
    let board = &BM1397_HASHBOARD_12;
    let Ok(addressing) = ChipAddressing::for_chain(board.chips_per_chain) else {
        return 0;
    };
    let mut dispatcher = Dispatcher::new(ChipModel::Bm1397, NonceLayout::ESP_MINER, addressing, 256.0, 1.0);
    let outcome = dispatcher.check(&NonceResponse {
        nonce_bytes: *bytes,
        byte6: 0,
        byte7,
        version_bits: None,
    });
    let mut fan = FanController::new(&board.thermal, board.min_fan_percent);
    let mut guard = ThermalGuard::new(board.thermal);
    let _ = guard.decide(0.0, Some(temp_c), Some(3000), fan.decide(Some(temp_c), 1.0).percent);
    u32::from(matches!(outcome, NonceOutcome::Stale { .. }))
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
