//! The end-to-end suites are in `tests/`; what they share (the built binaries, mosquitto on a
//! free port, processes, an MQTT watcher, the site bench, the fan-out harness) is the
//! `testbed` crate, which the firmware's and the agent's own suites use too.
