"""Built-in component encoders/decoders, registered through the plugin hooks.

Core modules never import this package: they look architectures up by name through
:func:`mcgen.plugins.get_architecture`.
"""
