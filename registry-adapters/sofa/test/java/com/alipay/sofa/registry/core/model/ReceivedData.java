// SOFA Registry's ReceivedData: field names and Java types of the public model class, for meshport's interop test.
package com.alipay.sofa.registry.core.model;

import java.io.Serializable;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

public class ReceivedData implements Serializable {
  private static final long serialVersionUID = 1L;
  String dataId;
  String group;
  String instanceId;
  String segment;
  String scope;
  List<String> subscriberRegistIds;
  Map<String, List<DataBox>> data;
  Long version;
  String localZone;
  Map<String, Integer> dataCount = new HashMap<String, Integer>();
}
