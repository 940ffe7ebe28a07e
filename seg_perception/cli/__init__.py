"""``seg-perception`` command line: :mod:`.main` dispatches, one module per subcommand parses
its arguments and calls into the library; :mod:`.common` holds the arguments they share."""
