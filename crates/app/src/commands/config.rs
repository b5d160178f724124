//! `pushwarden config check | example | readme-table`: the configuration, from the declarations
//! in [`crate::config::settings`].

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

use crate::config::{render, Environment, Invalid, Layers};

#[derive(Subcommand, Debug, Clone)]
pub enum ConfigCommand {
    /// Validate the file (--config) and PUSHWARDEN_* variables and print the effective
    /// configuration with secrets masked; exit 1 naming each bad value.
    Check,
    /// Print a commented TOML file with every setting and its default (pushwarden.example.toml).
    Example,
    /// Print the README's settings table (Markdown, with its markers).
    ReadmeTable,
}

/// Runs `command`; an invalid configuration is an error listing every problem.
pub fn run(command: &ConfigCommand, file: Option<&Path>) -> Result<()> {
    match command {
        ConfigCommand::Check => print!("{}", check(file, Environment::process())?),
        ConfigCommand::Example => print!("{}", render::example()),
        ConfigCommand::ReadmeTable => print!("{}", render::readme_table()),
    }
    Ok(())
}

/// The effective configuration as `config check` prints it, or every problem found.
pub fn check(file: Option<&Path>, env: Environment) -> Result<String> {
    let layers = Layers::new(file, env);
    let config = layers.resolve()?;
    let problems = layers.lint(&config);
    if !problems.is_empty() {
        return Err(Invalid(problems).into());
    }
    render::effective(&config, &layers)
}
