//! Integration tests of the simulator crate, one binary: the noise model of a realistic
//! province and what the rules make of it, and the lake's independence of the thread count.

// `cfg(test)` so that the helpers of the tests may unwrap like the tests (clippy.toml).
#[cfg(test)]
mod noise;
#[cfg(test)]
mod threads;
