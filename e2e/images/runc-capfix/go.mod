module cni-migrate/e2e/images/runc-capfix

go 1.26.0
