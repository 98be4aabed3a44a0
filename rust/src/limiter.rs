//! (limiter: placeholder, being written.)
