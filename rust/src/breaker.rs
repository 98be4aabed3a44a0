//! (breaker: placeholder, being written.)
