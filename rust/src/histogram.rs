//! (histogram: placeholder, being written.)
