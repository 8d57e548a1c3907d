//! End-to-end tests for pharmwatch live in `tests/tests/`.
