//! `/update/...` and `/latest` in-process: every point of SPEC §2.2 and §2.3.
