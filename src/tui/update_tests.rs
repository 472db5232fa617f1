//! Pure `update` tests: every wizard path, with cancel and back.
