"""Hop-wise Jacobian influence (hop_influence) and its benchmark against PyG."""
