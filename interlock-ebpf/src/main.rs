//! Interlock's kernel programs. Built for `bpfel-unknown-none` only (see xtask/src/ebpf.rs);
//! the agent embeds the resulting object and loads it with aya.
#![no_std]
#![no_main]

mod count;
mod lb;
mod packet;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
