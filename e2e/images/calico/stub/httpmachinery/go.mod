module github.com/projectcalico/calico/lib/httpmachinery
