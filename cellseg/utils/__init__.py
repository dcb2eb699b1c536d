"""Config resolvers, object instantiation, callbacks and the entry-point wrapper."""
