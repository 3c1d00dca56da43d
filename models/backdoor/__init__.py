"""Backdoors in dataset distillation (NAIVEATTACK, DOORPING) and a backdoor scanner served as `backdoor_scan`."""
