// The man page and the shell completions, drawn from the same CLI11
// definitions as --help: the build runs `memscope-trace --generate
// man|bash|zsh` (hidden from --help), so no copy of the options can drift.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace memscope {

// The page in roff (man(7)), versioned `version`.
std::string man_page(const CLI::App& app, const std::string& version);
// A bash completion script: subcommands, options, choices, files, pids.
std::string bash_completion(const CLI::App& app);
// A zsh completion function (#compdef) built on _arguments.
std::string zsh_completion(const CLI::App& app);

// Adds the hidden `--generate man|bash|zsh`: once `app` is parsed, the
// document is printed and parsing ends with CLI::Success (exit 0). Call it
// after every option and subcommand is defined.
void add_doc_generator(CLI::App& app, std::string version);

} // namespace memscope
