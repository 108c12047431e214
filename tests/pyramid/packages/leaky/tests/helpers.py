def tiny_config():
    return {}
