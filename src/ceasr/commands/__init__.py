"""Voice commands: command sets (grammar), constrained recognition with rejection, streaming spotting."""

from ceasr.commands.grammar import Command, CommandSet, jsgf, load_command_set, parse_command_set

__all__ = ["Command", "CommandSet", "jsgf", "load_command_set", "parse_command_set"]
