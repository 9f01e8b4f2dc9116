//! `memcpy` for the static x86_64 musl binaries: copies up to 256 bytes
//! with a few loads and stores, longer ones with one `rep movsb`.
//!
//! Why: musl's x86_64 `memcpy` is a `rep movsq` loop, whose start-up costs
//! tens of cycles on every call, however short the copy. Rust moves values
//! with `memcpy` (requests, responses, futures: a core `/health` makes about
//! 45 calls, nearly all under 200 bytes), and perf put musl's `memcpy` at
//! 8 % of the shipped core's time per request (docs/src/performance-history.md).
//! glibc copies short ranges with a few overlapping unaligned loads and
//! stores; so does [`copy_small`], up to 256 bytes. The binaries link with `--wrap=memcpy`
//! (`build.rs`): every call to `memcpy` comes to `__wrap_memcpy`, which
//! copies longer ranges with `rep movsb` (fast for them on CPUs since Ivy
//! Bridge and Zen), and calls nothing: a `memcpy` call made here would come
//! back here. Test binaries link without the wrap (they keep musl's
//! `memcpy`) and test `__wrap_memcpy` by calling it; the integration tests
//! run the wrapped binaries. aarch64 keeps musl's own, an optimised one.

use std::ptr::{read_unaligned, write_unaligned};

/// The largest copy done with loads and stores; longer ones take `rep movsb`.
/// Most of Rust's moves are under it (requests and responses are about 200
/// bytes), and up to it the start-up of `rep movsb` costs more than the copy.
pub const SMALL: usize = 256;

/// Copies `n` bytes, `16 * K <= n <= 32 * K`, as `K` 16-byte blocks from
/// the start and `K` from the end, overlapping in the middle; all loads
/// before any store. Written out, not looped: a loop of copies could be
/// turned back into a call to `memcpy`, which would come back here.
macro_rules! blocks_from_both_ends {
    ($dest:ident, $src:ident, $n:ident; $($k:literal)+) => {{
        let head = [$(read_unaligned::<u128>($src.add($k * 16).cast())),+];
        let tail = [$(read_unaligned::<u128>($src.add($n - ($k + 1) * 16).cast())),+];
        $(write_unaligned($dest.add($k * 16).cast(), head[$k]);)+
        $(write_unaligned($dest.add($n - ($k + 1) * 16).cast(), tail[$k]);)+
    }};
}

/// Copies `n` bytes from `src` to `dest`.
///
/// # Safety
/// As `memcpy`: `n <= SMALL`, both ranges valid for `n` bytes and not
/// overlapping.
#[inline(always)]
pub unsafe fn copy_small(dest: *mut u8, src: *const u8, n: usize) {
    debug_assert!(n <= SMALL);
    // Copies of one width from each end, overlapping in the middle: every
    // length of a range in a fixed number of moves (what glibc does).
    // SAFETY (all blocks): each access is within the first or last `n`
    // bytes of the ranges, which the caller vouches for; unaligned is fine.
    unsafe {
        if n > 128 {
            blocks_from_both_ends!(dest, src, n; 0 1 2 3 4 5 6 7);
        } else if n > 64 {
            blocks_from_both_ends!(dest, src, n; 0 1 2 3);
        } else if n > 32 {
            blocks_from_both_ends!(dest, src, n; 0 1);
        } else if n >= 16 {
            blocks_from_both_ends!(dest, src, n; 0);
        } else if n >= 8 {
            let head: u64 = read_unaligned(src.cast());
            let tail: u64 = read_unaligned(src.add(n - 8).cast());
            write_unaligned(dest.cast(), head);
            write_unaligned(dest.add(n - 8).cast(), tail);
        } else if n >= 4 {
            let head: u32 = read_unaligned(src.cast());
            let tail: u32 = read_unaligned(src.add(n - 4).cast());
            write_unaligned(dest.cast(), head);
            write_unaligned(dest.add(n - 4).cast(), tail);
        } else if n >= 2 {
            let head: u16 = read_unaligned(src.cast());
            let tail: u16 = read_unaligned(src.add(n - 2).cast());
            write_unaligned(dest.cast(), head);
            write_unaligned(dest.add(n - 2).cast(), tail);
        } else if n == 1 {
            *dest = *src;
        }
    }
}

/// What the binaries call for `memcpy` (see the module documentation).
///
/// # Safety
/// As `memcpy`: both ranges valid for `n` bytes and not overlapping.
#[cfg(all(target_env = "musl", target_arch = "x86_64"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __wrap_memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if n <= SMALL {
        // SAFETY: the caller's, as for memcpy; n is small.
        unsafe { copy_small(dest, src, n) };
    } else {
        // SAFETY: the caller's, as for memcpy. The direction flag is clear
        // at every call (System V ABI), so the copy runs forward.
        unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") n => _,
                inout("rdi") dest => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags)
            );
        }
    }
    dest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length up to SMALL (and past it, for the wrapper), at every
    /// alignment of source and destination within 16 bytes: exactly the
    /// `n` bytes are copied and the bytes around them are untouched.
    fn check(copy: impl Fn(*mut u8, *const u8, usize), max: usize) {
        let source: Vec<u8> = (0..max + 32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..=max {
            for from in 0..16 {
                for to in 0..16 {
                    let mut dest = vec![0xAA_u8; max + 32];
                    copy(dest[to..].as_mut_ptr(), source[from..].as_ptr(), n);
                    assert!(dest[..to].iter().all(|b| *b == 0xAA), "n {n}: before");
                    assert_eq!(&dest[to..to + n], &source[from..from + n], "n {n}");
                    assert!(dest[to + n..].iter().all(|b| *b == 0xAA), "n {n}: after");
                }
            }
        }
    }

    #[test]
    fn small_copies_copy_exactly_their_bytes() {
        // SAFETY: check passes ranges of n bytes inside two distinct vectors.
        check(|d, s, n| unsafe { copy_small(d, s, n) }, SMALL);
    }

    #[cfg(all(target_env = "musl", target_arch = "x86_64"))]
    #[test]
    fn the_wrapper_copies_small_and_large_copies_exactly() {
        // SAFETY: as above.
        check(
            |d, s, n| unsafe { assert_eq!(__wrap_memcpy(d, s, n), d) },
            300,
        );
    }
}
