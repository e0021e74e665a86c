// SOFA Registry's BaseRegister as its Hessian reader sees it: the field names and Java types of the public model class,
// written for meshport's interop test (no behaviour: Hessian fills the fields by reflection).
package com.alipay.sofa.registry.core.model;

import java.io.Serializable;
import java.util.Map;

public class BaseRegister implements Serializable {
  private static final long serialVersionUID = 1L;
  String instanceId;
  String zone;
  String appName;
  String dataId;
  String group;
  String processId;
  String registId;
  String clientId;
  String dataInfoId;
  String ip;
  Integer port;
  String eventType;
  Long version;
  Long timestamp;
  volatile Map<String, String> attributes;
}
