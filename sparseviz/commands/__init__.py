"""One module per `sparseviz` subcommand, each exposing ``register(subparsers)``."""
