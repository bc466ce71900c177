"""A real HTTP GraphQL fake of Stash: store, clock, generator, mutations, executor and server."""
