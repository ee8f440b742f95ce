module cni-migrate/e2e/images/labpod

go 1.26.0
