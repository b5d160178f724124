//! The CLI verbs besides `serve`: tools for trying pushwarden out and for scripts.

pub mod listen;
pub mod send;
pub mod token;
pub mod vapid;
