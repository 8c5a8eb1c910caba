"""Pure-Python twins of the compiled hot-path modules: identical behaviour, used when
``TL_ENGINE_PURE=1`` or the extension is not built, and as the reference in differential tests."""
