#![no_std]
#![forbid(unsafe_code)]

use bm13xx::{ChipModel, Event, InitConfig, InitSequence, ResponseDecoder, ResponseFormat};

/// Decodes a chip → host stream and counts frames: pulls the decoder, CRCs and response parsing
/// into the link.
pub extern "C" fn count_frames(data: &[u8; 64]) -> u32 {
    let mut decoder = ResponseDecoder::chip_to_host(ResponseFormat::Short);
    let is_frame = |event: &Event<_>| matches!(event, Event::Frame { .. });
    let fed = decoder.feed(data).filter(is_frame).count();
    let finished = decoder.finish().filter(is_frame).count();
    (fed + finished) as u32
}

/// Counts the steps of a BM1370 bring-up: pulls the sequencers and the PLL solver into the link.
pub extern "C" fn init_steps(chips: u32) -> u32 {
    InitSequence::new(InitConfig::esp_miner(ChipModel::Bm1370, chips))
        .map_or(0, |steps| steps.count() as u32)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
