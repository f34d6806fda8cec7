//! A lean SSH client for NETCONF (RFC 4253/4252/4254 over RustCrypto primitives
//! and `ssh-key` for host keys, signatures and key files): one session channel
//! with one subsystem, which is all RFC 6242 needs.
//!
//! Why not russh, as the driver first did: thousands of idle sessions are the
//! point, and russh 0.55 keeps about 110 KB of heap per connection once it has
//! carried some traffic (`heaptrack` of `drover run` over 1,000 simulated devices
//! after 40 `netconf.get_config` rounds: the connection task's future 22.6 KB, two
//! `client::Msg` channels of 18.7 KB each, a second block of one of them 18.7 KB,
//! the reply channel 5.9 KB, mlock'd key copies), and 0.65 adds a third `Msg`
//! channel (98.5 against 80.6 KiB per idle device in `drover bench --kind
//! netconf`). libssh2 held 85.8 KiB per idle session in a probe. This client is a
//! state machine without I/O ([`client::Engine`]) driven from the NETCONF session's
//! own task ([`SshStream`]): no task, channel or buffer of its own while idle.
//!
//! Offered: curve25519-sha256 and ecdh-sha2-nistp256 key exchange with OpenSSH's
//! strict kex; ssh-ed25519, ecdsa-sha2-nistp{256,384,521} and rsa-sha2-{512,256}
//! host keys; chacha20-poly1305, aes{256,128}-gcm and aes{256,128}-ctr with
//! hmac-sha2-{256,512}(-etm); password and public-key authentication; re-keying
//! started by either side. Not offered: SHA-1 anything, CBC ciphers, compression,
//! keyboard-interactive authentication, certificates.

pub mod cipher;
pub mod client;
pub mod error;
pub mod kex;
#[cfg(test)]
mod tests;
pub mod wire;

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use client::{Credentials, Engine, HostKeyCheck};
pub use error::SshError;

const READ_CHUNK: usize = 32 * 1024;

/// A connection: the socket and the engine, driven by whoever polls it.
pub struct SshStream {
    tcp: TcpStream,
    engine: Engine,
}

impl SshStream {
    /// Runs the handshake up to an open `subsystem`.
    pub async fn connect(
        tcp: TcpStream,
        username: String,
        creds: Credentials,
        check: HostKeyCheck,
        subsystem: &'static str,
    ) -> Result<SshStream, SshError> {
        let mut s = SshStream {
            tcp,
            engine: Engine::new(username, creds, check, subsystem),
        };
        std::future::poll_fn(|cx| loop {
            if s.engine.is_open() && s.engine.outgoing().is_empty() {
                return Poll::Ready(Ok(()));
            }
            match s.poll_io(cx) {
                Poll::Ready(Ok(())) => continue,
                other => return other,
            }
        })
        .await?;
        Ok(s)
    }

    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Writes what the engine has queued, then reads once and feeds it. Ready
    /// after a read (channel data may be waiting in the engine); Pending when
    /// the socket has nothing; an error ends the connection. Synchronous per
    /// poll, so cancelling a future built on it loses nothing.
    pub fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SshError>> {
        while !self.engine.outgoing().is_empty() {
            match Pin::new(&mut self.tcp).poll_write(cx, self.engine.outgoing()) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(SshError::Closed)),
                Poll::Ready(Ok(n)) => self.engine.written(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => break,
            }
        }
        // A local of this poll, not of a future: idle sessions keep no buffer.
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut buf = ReadBuf::uninit(&mut chunk);
        match Pin::new(&mut self.tcp).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Err(SshError::Closed)),
            Poll::Ready(Ok(())) => Poll::Ready(self.engine.feed(buf.filled())),
        }
    }
}
