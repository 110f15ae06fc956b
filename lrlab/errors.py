"""The two kinds of failure lrlab reports to a user in one line."""


class UsageError(Exception):
    """Bad input: a wrong name, parameter, value or file. The CLI exits with code 2."""


class PluginError(Exception):
    """A plugin broke the contract; the message names the plugin."""
