"""The four contracts between the TypeScript SDK and Python: config, run directory, events, bundle.

Their one source is sdk/contracts (TypeScript); ``generated.py`` is written from it by `npm run codegen`.
"""
