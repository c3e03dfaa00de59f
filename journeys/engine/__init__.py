"""The journey engine: one step machine (machine.py) over a World protocol (model.py).

Pure: imports no Django. The real world that writes PostgreSQL lives in journeys/world.py;
the simulated one in journeys/simulation.py.
"""
