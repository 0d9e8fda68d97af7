"""What the tests and the benchmarks share: the synthetic fleet and reading query plans.

Neither imports the other (the tests are no benchmark, the benchmarks are no test); both import
this. It uses the package's public API only and is not part of the wheel.
"""
