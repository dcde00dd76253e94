"""Graph data: load_graph (Planetoid, KarateClub, PyG sets, cities), City-Networks builder, road readers, hop balls."""
