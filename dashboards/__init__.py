"""Proctor's Grafana dashboards, generated as code.

The dashboards are built with `grafana-foundation-sdk`, Grafana's own SDK: its builders and models
are generated from Grafana's schemas, so they are typed (mypy catches a misspelt option, an
editor completes them), they follow each Grafana release, and Grafana Labs maintains them. The
alternatives are hand-written JSON (untyped, and a diff of thousands of lines for a small change)
or grafanalib (a community library that lags Grafana's schema).

`python -m dashboards.generate` writes the JSON the chart ships under
`charts/proctor/files/dashboards/`; `--check` fails when the committed JSON has drifted. This
package is a build tool: it is not part of the `proctor` distribution and no image carries it.
"""
