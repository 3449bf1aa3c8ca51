//! The `ret` instructions of a function, found by decoding its machine code (a byte scan for
//! 0xC3 would also hit operand bytes, and a uprobe in the middle of an instruction corrupts the
//! program).
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};

/// Offsets (relative to `code`) of every near `ret` (0xC3 and `ret imm16` 0xC2), decoding from
/// the start to the exact end of the function.
pub(super) fn find_returns(code: &[u8], address: u64) -> Result<Vec<u64>, String> {
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    let mut returns = Vec::new();
    while decoder.can_decode() {
        let at = decoder.position();
        decoder.decode_out(&mut instr);
        if instr.is_invalid() {
            // Losing sync would make every later offset suspect; refuse rather than guess.
            return Err(format!(
                "cannot decode the instruction at +{at:#x}: {:?}",
                decoder.last_error()
            ));
        }
        if instr.mnemonic() == Mnemonic::Ret {
            returns.push(at as u64);
        }
    }
    Ok(returns)
}
