//! Admin plane.
