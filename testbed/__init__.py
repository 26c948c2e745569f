"""The test bed the tests and the benchmarks share: the supervisor harness (its zipapp, the stand-in daemon), the
boot sandbox (the startup script with a metadata stand-in and stub commands), the real rendezvous built from the
pinned source, a stats server on loopback, and the whole fleet as Debian system containers under real systemd."""
