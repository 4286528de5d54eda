//! How much one listener lets its clients hold: connections, time and bytes. Every listener
//! (the public one and any loopback one served by the same loop) takes its own copy, so a
//! limit can differ per listener while the loop stays one.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Open connections at once. Beyond it a new connection is accepted and closed at once:
    /// it costs a file descriptor for a moment, never a task or a queue slot.
    pub max_connections: usize,
    /// A request head must arrive whole within this (hyper's header-read timeout; it also
    /// runs while a kept-alive connection waits for its next request).
    pub header_read_timeout: Duration,
    /// A connection with no request in progress and no byte in either direction for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// Bytes of a response the client has not taken within this are not waited for: the
    /// connection is closed.
    pub write_timeout: Duration,
    /// Request line plus headers, in bytes; larger heads are answered 431 and the connection
    /// is closed.
    pub max_head_bytes: usize,
    /// Requests inside the component at once; more wait for a turn. Each one holds an
    /// instance (and, for a gateway call, its upstream stream) until its answer is written, so
    /// this bounds memory, and a client that stops reading holds its place until the write
    /// deadline.
    pub max_in_flight: usize,
    /// The kernel's send buffer per connection (`SO_SNDBUF`; Linux doubles it). Left to
    /// autotuning, a client that never reads can park up to 4 MiB of answers in the kernel
    /// per connection, and the write deadline never sees it stall; bounded, the deadline
    /// bites once this much is unread.
    pub send_buffer_bytes: usize,
}

impl ListenerLimits {
    /// hyper refuses a read buffer below this.
    const MIN_READ_BUFFER: usize = 8192;

    /// The connection's read buffer: a head fits, and nothing bigger is ever buffered for a
    /// client that sends more than it should.
    pub fn read_buffer(&self) -> usize {
        self.max_head_bytes.max(Self::MIN_READ_BUFFER)
    }
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: 2048,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_head_bytes: 8192,
            max_in_flight: super::MAX_IN_FLIGHT,
            send_buffer_bytes: 128 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_buffer_holds_a_head_and_meets_hypers_minimum() {
        let small = ListenerLimits {
            max_head_bytes: 1024,
            ..ListenerLimits::default()
        };
        assert_eq!(small.read_buffer(), 8192);
        let large = ListenerLimits {
            max_head_bytes: 32 * 1024,
            ..ListenerLimits::default()
        };
        assert_eq!(large.read_buffer(), 32 * 1024);
    }
}
