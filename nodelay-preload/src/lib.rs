//! `LD_PRELOAD` library that forces `TCP_NODELAY` on every TCP socket of the
//! process it is loaded into. Benchmark use only.
//!
//! The official SLIM 1.3 stack turns Nagle's algorithm on for its gRPC
//! connections (`set_nodelay(false)` in `agntcy-slim-config`), which puts a
//! delayed-ACK wait of tens of milliseconds into every small request/response
//! exchange. Issue #5 quotes the official figures both as shipped and "with
//! TCP_NODELAY forced"; `slimrpc-runtime/benches/e2e.rs` produces the second
//! set by starting the official Python roles with this library preloaded.
//!
//! It interposes four libc entry points and defers to the real ones (found
//! with `dlsym(RTLD_NEXT, ..)`):
//! * `setsockopt(.., IPPROTO_TCP, TCP_NODELAY, ..)`: the value is replaced by 1;
//! * `connect` on an IPv4/IPv6 socket, `accept` and `accept4`: `TCP_NODELAY`
//!   is set to 1 on the socket afterwards (errors ignored: it may be a UDP or
//!   Unix socket, for which the option does not apply).
//!
//! Linux (glibc) only; on other systems the library is empty.

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::{c_char, c_int, c_void};
    use std::sync::atomic::{AtomicPtr, Ordering};

    type SockLen = u32;
    const IPPROTO_TCP: c_int = 6;
    const TCP_NODELAY: c_int = 1;
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    /// glibc's `RTLD_NEXT`: `((void *) -1l)`.
    const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;

    #[link(name = "dl")]
    unsafe extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }

    type SetSockOpt = unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, SockLen) -> c_int;
    type Connect = unsafe extern "C" fn(c_int, *const c_void, SockLen) -> c_int;
    type Accept = unsafe extern "C" fn(c_int, *mut c_void, *mut SockLen) -> c_int;
    type Accept4 = unsafe extern "C" fn(c_int, *mut c_void, *mut SockLen, c_int) -> c_int;

    /// The next definition of `name` after this library (libc's), looked up
    /// once and cached in `slot`, as a function pointer of type `F`.
    ///
    /// # Safety
    /// `F` must be the `extern "C"` function pointer type of libc's `name`.
    unsafe fn next<F: Copy>(slot: &AtomicPtr<c_void>, name: &std::ffi::CStr) -> Option<F> {
        const { assert!(size_of::<F>() == size_of::<*mut c_void>()) };
        let mut p = slot.load(Ordering::Acquire);
        if p.is_null() {
            // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always
            // safe to call; it returns null when the symbol is not found.
            p = unsafe { dlsym(RTLD_NEXT, name.as_ptr()) };
            slot.store(p, Ordering::Release);
        }
        // SAFETY: non-null, and the caller vouches that `F` is its type.
        (!p.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
    }

    static SETSOCKOPT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static CONNECT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static ACCEPT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static ACCEPT4: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

    fn real_setsockopt() -> Option<SetSockOpt> {
        // SAFETY: libc's setsockopt has exactly this signature.
        unsafe { next(&SETSOCKOPT, c"setsockopt") }
    }

    /// Turns Nagle off on `fd` with libc's `set`; returns its result
    /// (an error on sockets that are not TCP, which callers may ignore).
    fn nodelay_with(set: SetSockOpt, fd: c_int) -> c_int {
        let one: c_int = 1;
        // SAFETY: `one` outlives the call and its size is passed.
        unsafe {
            set(
                fd,
                IPPROTO_TCP,
                TCP_NODELAY,
                (&one as *const c_int).cast(),
                size_of::<c_int>() as SockLen,
            )
        }
    }

    /// Turns Nagle off on `fd`; harmless on sockets that are not TCP.
    fn nodelay(fd: c_int) {
        if let Some(set) = real_setsockopt() {
            nodelay_with(set, fd);
        }
    }

    /// # Safety
    /// Same contract as libc's `setsockopt`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn setsockopt(
        fd: c_int,
        level: c_int,
        name: c_int,
        value: *const c_void,
        len: SockLen,
    ) -> c_int {
        let Some(set) = real_setsockopt() else {
            return -1;
        };
        if level == IPPROTO_TCP && name == TCP_NODELAY {
            return nodelay_with(set, fd);
        }
        // SAFETY: the caller's arguments, passed through unchanged.
        unsafe { set(fd, level, name, value, len) }
    }

    /// # Safety
    /// Same contract as libc's `connect`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn connect(fd: c_int, addr: *const c_void, len: SockLen) -> c_int {
        // SAFETY: libc's connect has exactly this signature.
        let Some(real) = (unsafe { next::<Connect>(&CONNECT, c"connect") }) else {
            return -1;
        };
        // SAFETY: the caller's arguments, passed through unchanged.
        let rc = unsafe { real(fd, addr, len) };
        if !addr.is_null() && len as usize >= size_of::<u16>() {
            // SAFETY: every sockaddr starts with its 16-bit family, and the
            // caller vouched for `len` readable bytes.
            let family = unsafe { addr.cast::<u16>().read_unaligned() };
            if family == AF_INET || family == AF_INET6 {
                nodelay(fd);
            }
        }
        rc
    }

    /// # Safety
    /// Same contract as libc's `accept`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn accept(fd: c_int, addr: *mut c_void, len: *mut SockLen) -> c_int {
        // SAFETY: libc's accept has exactly this signature.
        let Some(real) = (unsafe { next::<Accept>(&ACCEPT, c"accept") }) else {
            return -1;
        };
        // SAFETY: the caller's arguments, passed through unchanged.
        accepted(unsafe { real(fd, addr, len) })
    }

    /// # Safety
    /// Same contract as libc's `accept4`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn accept4(
        fd: c_int,
        addr: *mut c_void,
        len: *mut SockLen,
        flags: c_int,
    ) -> c_int {
        // SAFETY: libc's accept4 has exactly this signature.
        let Some(real) = (unsafe { next::<Accept4>(&ACCEPT4, c"accept4") }) else {
            return -1;
        };
        // SAFETY: the caller's arguments, passed through unchanged.
        accepted(unsafe { real(fd, addr, len, flags) })
    }

    /// What `accept`/`accept4` return, after Nagle is turned off on the new
    /// socket.
    fn accepted(rc: c_int) -> c_int {
        if rc >= 0 {
            nodelay(rc);
        }
        rc
    }
}
