package load

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/horizonmesh/horizon/discovery"
)

// EncodeClusterSet writes cs in the ClusterSet file format
// (examples/local/clusterset.yaml), the input of `horizon serve
// --clusterset`: what the file scenario edits. Defaults are written out, so
// the file says exactly what cs holds; discovery/file parses it back to a
// ClusterSet of the same version (TestEncodeClusterSet).
func EncodeClusterSet(cs *discovery.ClusterSet) ([]byte, error) {
	doc := fileDoc{Clusters: make([]fileCluster, 0, len(cs.Clusters))}
	for _, c := range cs.Clusters {
		fc := fileCluster{Name: c.Name, Network: c.Network, Locality: fileLocalityOf(c.Locality), Services: []fileService{}}
		for _, g := range c.Gateways {
			fc.Gateways = append(fc.Gateways, fileGateway{Address: g.Address, Port: g.Port, ForNetwork: g.ForNetwork})
		}
		for _, s := range c.Services {
			fs := fileService{
				Name: s.Name, Namespace: s.Namespace, Type: string(s.Type), ClusterIP: s.ClusterIP,
				Exported: s.Exported, Endpoints: []fileEndpoint{},
			}
			if !s.ExportedAt.IsZero() {
				fs.ExportedAt = s.ExportedAt.UTC().Format(time.RFC3339Nano)
			}
			for _, p := range s.Ports {
				fs.Ports = append(fs.Ports, filePort{Name: p.Name, Port: p.Port, TargetPort: p.TargetPort, Protocol: p.Protocol, AppProtocol: p.AppProtocol})
			}
			for _, e := range s.Endpoints {
				fs.Endpoints = append(fs.Endpoints, fileEndpoint{
					Address: e.Address, Region: e.Locality.Region, Zone: e.Locality.Zone, SubZone: e.Locality.SubZone,
					Ready: e.Ready, Serving: e.Serving, Terminating: e.Terminating,
					ServiceAccount: e.ServiceAccount, MTLS: e.MTLS, Labels: e.Labels, Ports: e.Ports,
				})
			}
			fc.Services = append(fc.Services, fs)
		}
		doc.Clusters = append(doc.Clusters, fc)
	}
	return yaml.Marshal(doc)
}

type fileDoc struct {
	Clusters []fileCluster `yaml:"clusters"`
}

type fileCluster struct {
	Name     string        `yaml:"name"`
	Network  string        `yaml:"network"`
	Locality *fileLocality `yaml:"locality,omitempty"`
	Gateways []fileGateway `yaml:"gateways,omitempty"`
	Services []fileService `yaml:"services"`
}

type fileLocality struct {
	Region  string `yaml:"region,omitempty"`
	Zone    string `yaml:"zone,omitempty"`
	SubZone string `yaml:"subZone,omitempty"`
}

func fileLocalityOf(l discovery.Locality) *fileLocality {
	if l == (discovery.Locality{}) {
		return nil
	}
	return &fileLocality{Region: l.Region, Zone: l.Zone, SubZone: l.SubZone}
}

type fileGateway struct {
	Address    string `yaml:"address"`
	Port       uint32 `yaml:"port"`
	ForNetwork string `yaml:"forNetwork,omitempty"`
}

type fileService struct {
	Name       string         `yaml:"name"`
	Namespace  string         `yaml:"namespace"`
	Type       string         `yaml:"type,omitempty"`
	ClusterIP  string         `yaml:"clusterIP,omitempty"`
	Exported   bool           `yaml:"exported"`
	ExportedAt string         `yaml:"exportedAt,omitempty"`
	Ports      []filePort     `yaml:"ports,omitempty"`
	Endpoints  []fileEndpoint `yaml:"endpoints"`
}

type filePort struct {
	Name        string `yaml:"name,omitempty"`
	Port        uint32 `yaml:"port"`
	TargetPort  uint32 `yaml:"targetPort,omitempty"`
	Protocol    string `yaml:"protocol,omitempty"`
	AppProtocol string `yaml:"appProtocol,omitempty"`
}

type fileEndpoint struct {
	Address        string            `yaml:"address"`
	Region         string            `yaml:"region,omitempty"`
	Zone           string            `yaml:"zone,omitempty"`
	SubZone        string            `yaml:"subZone,omitempty"`
	Ready          bool              `yaml:"ready"`
	Serving        bool              `yaml:"serving"`
	Terminating    bool              `yaml:"terminating"`
	ServiceAccount string            `yaml:"serviceAccount,omitempty"`
	MTLS           bool              `yaml:"mtls"`
	Labels         map[string]string `yaml:"labels,omitempty"`
	Ports          map[string]uint32 `yaml:"ports,omitempty"`
}
