//! The CLI verbs besides `serve`: tools for trying pushwarden out and for scripts.

pub mod config;
pub mod doctor;
pub mod installation;
pub mod listen;
pub mod register;
pub mod send;
pub mod service;
pub mod token;
pub mod vapid;
