module cni-migrate/e2e/images/node-bin/pause

go 1.26.0
